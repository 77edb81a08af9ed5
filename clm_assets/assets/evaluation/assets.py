"""``evaluation/backtest_<family>``: the stored model, replayed on its evaluation window."""

from pathlib import Path

import dagster as dg
import pandas as pd

from clm_assets.assets.training.assets import FEATURES_KEY, lookback_days
from clm_assets.backtest.metrics import buy_and_hold
from clm_assets.backtest.report import equity_png, metrics_markdown, png_markdown, write_tearsheet
from clm_assets.backtest.window import Costs, evaluate_on_window
from clm_assets.models.artifact import TrainedModels
from clm_assets.models.families import FAMILIES
from clm_assets.models.windows import windows_for
from clm_assets.partitions import (
    DAILY,
    DATE,
    SYMBOL,
    as_of_window,
    model_partitions,
    window_mapping,
)
from clm_assets.registry.evaluations import record_evaluation
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta

RAW_KEY = dg.AssetKey(["market_data", "raw_ohlcv"])
PARTITION_EXPR = {DATE: "as_of", SYMBOL: "symbol"}
SHOWN = [
    "total_return", "sharpe", "sortino", "max_drawdown", "cagr", "volatility", "win_rate",
    "profit_factor", "exposure", "trade_count", "avg_trade_return", "psr",
]  # fmt: skip
PREDICTION_SHOWN = ["accuracy", "precision", "recall", "f1", "mae", "rmse", "pearson"]


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[backtest_asset(family, settings) for family in FAMILIES])


def backtest_asset(family: str, settings: Settings) -> dg.AssetsDefinition:
    partitions = model_partitions(settings)
    bar = interval_delta(settings.interval)
    mapping = window_mapping(lookback_days(settings)) if settings.model_cron == DAILY else None

    @dg.asset(
        key=["evaluation", f"backtest_{family}"],
        group_name="evaluation",
        description=f"Out-of-sample backtest of models/{family}, loaded from its stored bytes, "
        f"on the {settings.eval_days} days before the as-of time: signal at a bar's close, fill "
        f"at the next open, {settings.fee_bps:g} bps fees + {settings.slippage_bps:g} bps "
        "slippage; metrics vs buy-and-hold and flat, and a quantstats tearsheet.",
        partitions_def=partitions,
        ins={"models": dg.AssetIn(key=["models", family])},
        deps=[
            dg.AssetDep(FEATURES_KEY, partition_mapping=mapping),
            dg.AssetDep(RAW_KEY, partition_mapping=mapping),
        ],
        io_manager_key="duckdb_io",
        metadata={"partition_expr": PARTITION_EXPR, "family": family},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"pandas", "duckdb"},
        tags={"family": family},
    )
    def _backtest(
        context: dg.AssetExecutionContext, models: TrainedModels, storage: StorageResource
    ) -> dg.Output[pd.DataFrame]:
        frames, meta = [], {}
        costs = Costs(settings.fee_bps, settings.slippage_bps, settings.long_only)
        for artifact in models.artifacts:
            _, as_of_end = as_of_window(partitions, artifact.as_of)
            wins = windows_for(
                as_of_end,
                settings.train_days,
                settings.eval_days,
                settings.label_horizon,
                bar,
            )
            label = f"backtest_{family} {artifact.as_of:%Y-%m-%d %H:%M}|{artifact.symbol}"
            ev = evaluate_on_window(storage.store, artifact, wins, settings.interval, costs, label)
            title = (
                f"{family} {artifact.symbol} as of {artifact.as_of:%Y-%m-%d} ({artifact.version})"
            )
            tearsheet = write_tearsheet(
                ev.result,
                Path(settings.reports_dir)
                / artifact.symbol
                / f"{artifact.as_of:%Y-%m-%d}"
                / f"{family}.html",
                title,
                settings.interval,
            )
            with storage.store.transaction() as conn:
                record_evaluation(
                    conn,
                    family=family,
                    symbol=artifact.symbol,
                    as_of=artifact.as_of,
                    version=artifact.version,
                    eval_start=wins.eval_start,
                    eval_end=wins.eval_end,
                    bars=ev.result.n_bars,
                    metrics=ev.metrics,
                    tearsheet_path=str(tearsheet),
                )
            per_bar = ev.result.to_frame()
            per_bar.insert(0, "as_of", artifact.as_of)
            per_bar.insert(1, "symbol", artifact.symbol)
            per_bar["bh_return"] = buy_and_hold(ev.result).returns
            frames.append(per_bar)
            meta = {
                "version": artifact.version,
                "eval_window": f"{wins.eval_start} → {wins.eval_end}",
                "bars": ev.result.n_bars,
                **{
                    k: ev.metrics[k]
                    for k in ("sharpe", "max_drawdown", "profit_factor", "trade_count", "psr")
                    if ev.metrics[k] is not None
                },
                "bh_sharpe": ev.metrics["bh_sharpe"]
                if ev.metrics["bh_sharpe"] is not None
                else "n/a",
                "metrics": dg.MetadataValue.md(metrics_markdown(ev.metrics, SHOWN)),
                "prediction_metrics": dg.MetadataValue.md(
                    "| metric | value |\n|---|---:|\n"
                    + "\n".join(
                        f"| {k} | {'n/a' if ev.metrics[k] is None else f'{ev.metrics[k]:.4g}'} |"
                        for k in PREDICTION_SHOWN
                    )
                ),
                "equity_curve": dg.MetadataValue.md(
                    png_markdown(equity_png(ev.result, buy_and_hold(ev.result), title), "equity")
                ),
                "tearsheet": dg.MetadataValue.path(str(tearsheet)),
            }
        frame = pd.concat(frames, ignore_index=True)
        return dg.Output(frame, metadata={"models": len(models.artifacts), **meta})

    return _backtest
