"""Vectorized next-open backtests of target positions and the metrics computed from them.

``engine.run_backtest`` turns a model's target positions (decided at each bar's close) into
per-bar returns, costs, an equity curve and a trade list; ``metrics.metrics_table`` turns a
``BacktestResult`` into a flat dict of annualized quantstats metrics, trade statistics,
Probabilistic Sharpe Ratios, prediction-quality metrics and the same metrics for the
buy-and-hold and flat baselines on the same bars. Nothing here knows about Dagster.
"""
