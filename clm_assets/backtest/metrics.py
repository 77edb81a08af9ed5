"""Metrics of a backtest, all computed from its real per-bar returns, positions and trades.

Annualization: ``periods = bars_per_year(interval)`` (8760 for hourly bars of a 24/7
market), passed to quantstats as ``periods``; its default of 252 would understate an
hourly Sharpe by ``sqrt(8760 / 252)``.

A metric that is undefined on the given returns is ``None``, never a stand-in number:
Sharpe of constant returns (zero variance), Sortino without a losing bar, win rate without
a non-zero bar, profit factor without a losing bar (it would be infinite), the average
trade return without trades, PSR when the Sharpe ratio or its standard error is undefined,
and any statistic of fewer bars than it needs (volatility and Sharpe need 2).

quantstats conventions kept (``quantstats.stats`` 0.0.86):
  * ``sharpe = mean / std(ddof=1) * sqrt(periods)``; ``volatility = std(ddof=1) *
    sqrt(periods)``; ``sortino = mean / sqrt(sum(min(r, 0)^2) / n) * sqrt(periods)``;
    ``cagr = prod(1 + r) ** (periods / n) - 1``; ``max_drawdown`` is the worst
    ``equity / running peak - 1`` with the equity starting at 1.0 (a negative number).
  * ``win_rate`` = positive bars / non-zero bars: bars with a return of exactly 0 (flat,
    no cost) are left out of both counts; it is per bar, not per trade.
  * ``profit_factor`` = sum of returns >= 0 / |sum of returns < 0|, per bar.
  * quantstats reads a series whose values are all >= 0 with a maximum >= 1 as *prices*;
    such returns (every bar a gain, one of them >= +100 %) raise ``MetricsError`` instead
    of being silently converted.

Trade statistics come from ``BacktestResult.trades``; a trade still open at the last bar is
counted, marked to the last close. Prediction metrics compare a model's ``score`` with the
realized forward return it was trained to predict (see ``prediction_metrics``).
"""

from __future__ import annotations

import functools
import logging
import math
from statistics import NormalDist
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.sources.intervals import bars_per_year

RETURN_KEYS: tuple[str, ...] = (
    "n_bars",
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "volatility",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "psr",
)
"""Metrics of a per-bar return series (``return_metrics``)."""

STRATEGY_KEYS: tuple[str, ...] = (
    *RETURN_KEYS,
    "exposure",
    "turnover",
    "trade_count",
    "avg_trade_return",
)
"""``RETURN_KEYS`` plus position and trade statistics (``strategy_metrics``)."""

PREDICTION_KEYS: tuple[str, ...] = (
    "pred_count",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "mae",
    "rmse",
    "pearson",
)
"""Prediction-quality metrics (``prediction_metrics``)."""

BASELINES: tuple[str, ...] = ("bh", "flat")
"""Prefixes of the baseline blocks: buy-and-hold and flat on the same bars and costs."""

TABLE_KEYS: tuple[str, ...] = (
    *STRATEGY_KEYS,
    "psr_vs_incumbent",
    *PREDICTION_KEYS,
    *(f"{prefix}_{key}" for prefix in BASELINES for key in STRATEGY_KEYS),
)
"""Every key of ``metrics_table``, always present, in this order."""


class MetricsError(ValueError):
    """Metrics cannot be computed from the inputs as given."""


@functools.cache
def _qs() -> ModuleType:
    """``quantstats.stats``, imported on first use (the package pulls in matplotlib, ~4 s)."""
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import quantstats.stats as qs_stats

    return qs_stats


def _opt(value: Any) -> float | None:
    """A finite float, or None for an undefined (NaN/inf) value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def periods_per_year(interval: str) -> float:
    """Annualization factor for ``interval`` (bars per 365-day year, 8760 for ``1h``)."""
    return bars_per_year(interval)


# --------------------------------------------------------------------------- Sharpe / PSR


def per_bar_sharpe(returns: Any) -> float | None:
    """Non-annualized Sharpe ratio ``mean / std(ddof=1)``; None for < 2 bars or constant."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2 or np.all(r == r[0]):
        return None
    return _opt(r.mean() / r.std(ddof=1))


def probabilistic_sharpe_ratio(
    returns: Any, sr_benchmark: float = 0.0, *, moments: str = "sample"
) -> float | None:
    """Probabilistic Sharpe Ratio (Bailey & López de Prado, 2012).

    ``PSR(SR*) = Φ((SR - SR*) * sqrt(n - 1) / sqrt(1 - γ3 * SR + (γ4 - 1) / 4 * SR²))``

    with ``SR`` the per-bar (non-annualized) Sharpe ratio ``mean / std(ddof=1)``, ``SR*``
    the per-bar benchmark Sharpe, ``n`` the number of bars, ``γ3`` the skewness and ``γ4``
    the (non-excess) kurtosis of the per-bar returns: the probability that the true Sharpe
    ratio exceeds ``SR*`` given the sample's length and higher moments.

    ``moments="sample"`` (default, the paper's estimator) uses the plain moment ratios
    ``m3 / m2^1.5`` and ``m4 / m2²``; ``moments="unbiased"`` uses the bias-corrected
    estimators pandas' ``skew``/``kurt`` compute, which is what quantstats'
    ``probabilistic_sharpe_ratio`` (SR* = 0 only) does.

    None when the Sharpe ratio is undefined, or the radicand is not positive.
    """
    if moments not in ("sample", "unbiased"):
        raise MetricsError(f"moments must be 'sample' or 'unbiased', got {moments!r}")
    r = np.asarray(returns, dtype=np.float64)
    sr = per_bar_sharpe(r)
    if sr is None or not math.isfinite(sr_benchmark):
        return None
    n = len(r)
    bias = moments == "sample"
    if not bias and n < 4:
        return None
    skew = float(sps.skew(r, bias=bias))
    kurt = float(sps.kurtosis(r, fisher=False, bias=bias))
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not (math.isfinite(radicand) and radicand > 0):
        return None
    z = (sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(radicand)
    return float(sps.norm.cdf(z))


EULER_GAMMA = 0.5772156649015329


@functools.cache
def expected_max_sharpe(n_trials: int) -> float:
    """Expected maximum of ``n_trials`` independent standard normal Sharpe estimates, in
    units of their standard deviation (Bailey & López de Prado 2014, eq. for ``E[max]``):

    ``(1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))`` with γ the Euler-Mascheroni constant.

    One trial selects nothing, so its expected maximum is its mean, 0.
    """
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise MetricsError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if n_trials == 1:
        return 0.0
    n, z = float(n_trials), NormalDist()
    return (1 - EULER_GAMMA) * z.inv_cdf(1 - 1 / n) + EULER_GAMMA * z.inv_cdf(1 - 1 / (n * math.e))


def null_sharpe_variance(n_bars: int) -> float | None:
    """Variance of the per-bar Sharpe estimator when the true Sharpe is 0:
    ``(1 - γ3·SR + (γ4 - 1)/4·SR²) / (T - 1)`` at ``SR = 0`` is ``1 / (T - 1)``, whatever the
    skewness and kurtosis. None below 2 bars."""
    return None if n_bars < 2 else 1.0 / (n_bars - 1)


def deflated_sharpe_ratio(
    returns: Any, n_trials: int, sr_variance: float | None = None
) -> float | None:
    """Deflated Sharpe Ratio (Bailey & López de Prado 2014): the PSR of ``returns`` against
    the Sharpe the best of ``n_trials`` no-skill strategies would show by luck,

    ``SR0 = sqrt(V) · expected_max_sharpe(N)``,  ``DSR = PSR(SR0)``

    with ``V`` the variance of the trials' per-bar Sharpe estimates; by default the null
    variance ``1 / (T - 1)`` of this record's own length (``null_sharpe_variance``). The
    PSR is ``probabilistic_sharpe_ratio``'s with the paper's sample moments, computed
    with numpy (the power study calls this ~10⁵ times). None where the PSR is undefined
    (constant returns, fewer than 2 bars, a non-positive radicand).
    """
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    variance = null_sharpe_variance(n) if sr_variance is None else float(sr_variance)
    if variance is None:
        return None
    if not (math.isfinite(variance) and variance >= 0):
        raise MetricsError(f"sr_variance must be finite and >= 0, got {sr_variance}")
    sr = per_bar_sharpe(r)
    if sr is None:
        return None
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurt = float(np.mean(centred**4)) / m2**2
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not (math.isfinite(radicand) and radicand > 0):
        return None
    sr0 = math.sqrt(variance) * expected_max_sharpe(n_trials)
    return NormalDist().cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(radicand))


def max_drawdown_of(returns: Any) -> float:
    """Worst ``equity / running peak - 1`` of compounded returns, equity starting at 1.0
    (quantstats' ``max_drawdown`` convention, computed with numpy: no index needed); 0.0 for
    an empty series."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) == 0:
        return 0.0
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return float(np.min(equity / np.maximum.accumulate(equity) - 1.0))


# --------------------------------------------------------------------------- return metrics


def _series(returns: np.ndarray, open_time: Any) -> pd.Series:
    index = pd.DatetimeIndex(open_time)
    if len(index) != len(returns):
        raise MetricsError(f"{len(returns)} returns but {len(index)} open times")
    return pd.Series(returns, index=index, dtype=np.float64)


def return_metrics(returns: Any, open_time: Any, periods: float) -> dict[str, float | None]:
    """``RETURN_KEYS`` of a per-bar net return series, annualized with ``periods``.

    ``open_time`` (one per return) gives quantstats the date index it requires.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) == 0:
        raise MetricsError("need a non-empty one-dimensional return series")
    if not np.all(np.isfinite(r)):
        raise MetricsError("returns contain NaN/inf")
    if not (math.isfinite(periods) and periods > 0):
        raise MetricsError(f"periods must be > 0, got {periods}")
    if r.min() >= 0 and r.max() >= 1:
        raise MetricsError(
            "every return is >= 0 and one is >= +100 %: quantstats would read the series as "
            "prices; refusing to compute metrics it would get wrong"
        )
    qs = _qs()
    s = _series(r, open_time)
    n = len(r)
    constant = bool(np.all(r == r[0]))
    any_loss = bool((r < 0).any())
    any_nonzero = bool((r != 0).any())
    return {
        "n_bars": float(n),
        "total_return": _opt(np.prod(1.0 + r) - 1.0),
        "cagr": _opt(qs.cagr(s, periods=periods)),
        "sharpe": None if n < 2 or constant else _opt(qs.sharpe(s, periods=periods)),
        "sortino": _opt(qs.sortino(s, periods=periods)) if any_loss else None,
        "volatility": _opt(qs.volatility(s, periods=periods)) if n >= 2 else None,
        "max_drawdown": _opt(qs.max_drawdown(s)),
        "win_rate": _opt(qs.win_rate(s)) if any_nonzero else None,
        "profit_factor": _opt(qs.profit_factor(s)) if any_loss else None,
        "psr": probabilistic_sharpe_ratio(r, 0.0),
    }


def strategy_metrics(result: BacktestResult, periods: float) -> dict[str, float | None]:
    """``STRATEGY_KEYS``: ``return_metrics`` of the net returns plus position/trade stats.

    ``exposure`` is the fraction of bars with a non-zero position, ``turnover`` the mean
    notional traded per bar as a fraction of equity (drift rebalancing included; the cost
    of a bar is ``c * turnover``), ``trade_count``/``avg_trade_return`` (arithmetic mean of
    the trades' net compounded returns) include a trade still open at the last bar.
    """
    out = return_metrics(result.returns, result.open_time, periods)
    trade_returns = result.trades["return"].to_numpy(dtype=np.float64)
    out["exposure"] = float(np.mean(result.position != 0))
    out["turnover"] = float(np.mean(result.turnover))
    out["trade_count"] = float(len(trade_returns))
    out["avg_trade_return"] = float(trade_returns.mean()) if len(trade_returns) else None
    return out


# --------------------------------------------------------------------------- predictions


def prediction_metrics(score: Any, realized: Any) -> dict[str, float | None]:
    """``PREDICTION_KEYS``: a model's scores against the realized forward returns.

    Rows whose realized return is NaN (label still pending: the future bars do not exist
    yet) are left out and ``pred_count`` says how many rows were used; a NaN score on a row
    with a realized return is an error. Sign metrics treat "up" (> 0) as the positive class:
    ``accuracy`` = share of rows with ``sign(score) == sign(realized)``; ``precision`` =
    TP / (score > 0), ``recall`` = TP / (realized > 0), ``f1`` their harmonic mean, with
    TP = rows where both are > 0; None where a denominator is 0. ``mae``/``rmse`` compare
    score and realized return directly (meaningful when the score is a return forecast);
    ``pearson`` is their linear correlation (None when either is constant).
    """
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(realized, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1:
        raise MetricsError(f"score {s.shape} and realized {y.shape} must be equal-length 1-D")
    known = np.isfinite(y)
    s, y = s[known], y[known]
    if not np.all(np.isfinite(s)):
        raise MetricsError("score is NaN/inf on rows with a realized return")
    out: dict[str, float | None] = dict.fromkeys(PREDICTION_KEYS)
    n = len(s)
    out["pred_count"] = float(n)
    if n == 0:
        return out
    pred_up, real_up = s > 0, y > 0
    tp = float(np.sum(pred_up & real_up))
    n_pred_up, n_real_up = float(pred_up.sum()), float(real_up.sum())
    precision = tp / n_pred_up if n_pred_up else None
    recall = tp / n_real_up if n_real_up else None
    out["accuracy"] = float(np.mean(np.sign(s) == np.sign(y)))
    out["precision"] = precision
    out["recall"] = recall
    if precision is not None and recall is not None and precision + recall > 0:
        out["f1"] = 2.0 * precision * recall / (precision + recall)
    err = s - y
    out["mae"] = float(np.mean(np.abs(err)))
    out["rmse"] = float(np.sqrt(np.mean(err**2)))
    if n >= 2 and not np.all(s == s[0]) and not np.all(y == y[0]):
        out["pearson"] = _opt(np.corrcoef(s, y)[0, 1])
    return out


# --------------------------------------------------------------------------- baselines


def buy_and_hold(result: BacktestResult) -> BacktestResult:
    """Position 1 throughout on the same bars and costs: entered at the first fill (the
    open of the strategy's first bar, paying the entry fee), never exited."""
    n = len(result.bar_open)
    return run_backtest(
        result.bar_open_time,
        result.bar_open,
        result.bar_close,
        np.ones(n),
        fee_bps=result.fee_bps,
        slippage_bps=result.slippage_bps,
    )


def flat(result: BacktestResult) -> BacktestResult:
    """Position 0 throughout on the same bars: every return is exactly 0."""
    n = len(result.bar_open)
    return run_backtest(
        result.bar_open_time,
        result.bar_open,
        result.bar_close,
        np.zeros(n),
        fee_bps=result.fee_bps,
        slippage_bps=result.slippage_bps,
    )


# --------------------------------------------------------------------------- the table


def metrics_table(
    result: BacktestResult,
    interval: str,
    *,
    score: Any = None,
    realized: Any = None,
    incumbent_returns: Any = None,
) -> dict[str, float | None]:
    """Every metric of one backtest as a flat dict with the keys ``TABLE_KEYS``, in order.

    Args:
        result: the strategy's ``run_backtest`` result.
        interval: bar interval (``"1h"``, …) giving ``periods = bars_per_year(interval)``.
        score, realized: the model's scores and realized forward returns, row-aligned,
            for ``PREDICTION_KEYS`` (all None when not given).
        incumbent_returns: per-bar net returns of the incumbent model (ideally on the same
            bars); ``psr_vs_incumbent`` is the PSR with SR* = the incumbent's per-bar Sharpe
            (None when not given or undefined).

    Baseline blocks ``bh_*`` and ``flat_*`` hold ``STRATEGY_KEYS`` of buy-and-hold and flat
    run on the same bars with the same costs.
    """
    periods = periods_per_year(interval)
    table: dict[str, float | None] = dict.fromkeys(TABLE_KEYS)
    table.update(strategy_metrics(result, periods))
    if incumbent_returns is not None:
        sr_star = per_bar_sharpe(incumbent_returns)
        if sr_star is not None:
            table["psr_vs_incumbent"] = probabilistic_sharpe_ratio(result.returns, sr_star)
    if (score is None) != (realized is None):
        raise MetricsError("pass both score and realized, or neither")
    if score is not None:
        table.update(prediction_metrics(score, realized))
    for prefix, baseline in (("bh", buy_and_hold(result)), ("flat", flat(result))):
        for key, value in strategy_metrics(baseline, periods).items():
            table[f"{prefix}_{key}"] = value
    if tuple(table) != TABLE_KEYS:  # a new key must be declared in TABLE_KEYS first
        raise MetricsError(f"metrics_table keys drifted: {sorted(set(table) ^ set(TABLE_KEYS))}")
    return table
