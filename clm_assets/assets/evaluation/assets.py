"""``evaluation/backtest_<family>``: the stored model, replayed on its evaluation window."""

from pathlib import Path

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DUCKDB_POOL, run_config_record
from clm_assets.assets.training.assets import FEATURES_KEY, lookback_days
from clm_assets.backtest.evaluate import Evaluation
from clm_assets.backtest.metrics import buy_and_hold
from clm_assets.backtest.report import (
    equity_png,
    metrics_markdown,
    png_markdown,
    write_tearsheet,
)
from clm_assets.backtest.window import Costs, evaluate_on_window
from clm_assets.models.artifact import ModelArtifact, TrainedModels
from clm_assets.models.windows import Windows, windows_for
from clm_assets.numbers import fmt_number
from clm_assets.partitions import (
    AS_OF_PARTITION_EXPR,
    DAILY,
    as_of_window,
    model_partitions,
    partition_key_of,
    window_mapping,
)
from clm_assets.registry.evaluations import record_evaluation
from clm_assets.resources.backtest import BacktestResource
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta

RAW_KEY = dg.AssetKey(["market_data", "raw_ohlcv"])
SHOWN = [
    "total_return", "sharpe", "sortino", "max_drawdown", "cagr", "volatility", "win_rate",
    "profit_factor", "exposure", "trade_count", "avg_trade_return", "psr",
]  # fmt: skip
HEADLINE = ("sharpe", "max_drawdown", "profit_factor", "trade_count", "psr", "bh_sharpe")
PREDICTION_SHOWN = ["accuracy", "precision", "recall", "f1", "mae", "rmse", "pearson"]


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[backtest_asset(family, settings) for family in settings.families])


def backtest_asset(family: str, settings: Settings) -> dg.AssetsDefinition:
    mapping = window_mapping(lookback_days(settings)) if settings.model_cron == DAILY else None

    @dg.asset(
        key=["evaluation", f"backtest_{family}"],
        group_name="evaluation",
        description=f"Out-of-sample backtest of models/{family}, loaded from its stored bytes, "
        f"on the {settings.eval_days} days before the as-of time: signal at a bar's close, fill "
        "at the next open, fees and slippage from the backtest resource (shown on each "
        "materialization); metrics vs buy-and-hold and flat, and a quantstats tearsheet.",
        partitions_def=model_partitions(settings),
        ins={"models": dg.AssetIn(key=["models", family])},
        deps=[
            dg.AssetDep(FEATURES_KEY, partition_mapping=mapping),
            dg.AssetDep(RAW_KEY, partition_mapping=mapping),
        ],
        io_manager_key="duckdb_io",
        pool=DUCKDB_POOL,
        metadata={"partition_expr": AS_OF_PARTITION_EXPR, "family": family},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"pandas", "duckdb"},
        tags={"family": family},
    )
    def _backtest(
        context: dg.AssetExecutionContext,
        models: TrainedModels,
        storage: StorageResource,
        backtest: BacktestResource,
    ) -> dg.Output[pd.DataFrame]:
        return backtest_models(context, settings, models, storage, backtest)

    return _backtest


def backtest_models(
    context: dg.AssetExecutionContext,
    settings: Settings,
    models: TrainedModels,
    storage: StorageResource,
    backtest: BacktestResource,
) -> dg.Output[pd.DataFrame]:
    """Evaluate each stored model of the step on its window; each partition's
    materialization carries its own metrics, curve and settings."""
    partitions = model_partitions(settings)
    bar = interval_delta(settings.interval)
    costs = backtest.costs()
    frames = []
    for artifact in models.artifacts:
        _, as_of_end = as_of_window(partitions, artifact.as_of)
        wins = windows_for(
            as_of_end, settings.train_days, settings.eval_days, settings.label_horizon, bar
        )
        key = partition_key_of(partitions, artifact.as_of, artifact.symbol)
        consumer = f"backtest_{artifact.family} {key}"
        ev = evaluate_on_window(storage.store, artifact, wins, settings.interval, costs, consumer)
        title = f"{artifact.family} {key} ({artifact.version})"
        tearsheet = write_tearsheet(
            ev.result,
            Path(settings.reports_dir)
            / artifact.symbol
            / f"{artifact.as_of:%Y-%m-%d}"
            / f"{artifact.family}.html",
            title,
            settings.interval,
        )
        with storage.store.transaction() as conn:
            record_evaluation(
                conn,
                family=artifact.family,
                symbol=artifact.symbol,
                as_of=artifact.as_of,
                version=artifact.version,
                eval_start=wins.eval_start,
                eval_end=wins.eval_end,
                bars=ev.result.n_bars,
                metrics=ev.metrics,
                tearsheet_path=str(tearsheet),
                costs=costs.as_dict(),
            )
        per_bar = ev.result.to_frame()
        per_bar.insert(0, "as_of", artifact.as_of)
        per_bar.insert(1, "symbol", artifact.symbol)
        per_bar["bh_return"] = buy_and_hold(ev.result).returns
        frames.append(per_bar)
        context.add_asset_metadata(
            _partition_metadata(artifact, wins, ev, title, tearsheet, settings, costs),
            partition_key=key,
        )
    return dg.Output(pd.concat(frames, ignore_index=True))


def _partition_metadata(
    artifact: ModelArtifact,
    wins: Windows,
    ev: Evaluation,
    title: str,
    tearsheet: Path,
    settings: Settings,
    costs: Costs,
) -> dict:
    metrics = ev.metrics
    return {
        "version": artifact.version,
        "eval_window": f"{wins.eval_start} → {wins.eval_end}",
        "bars": ev.result.n_bars,
        **{k: "n/a" if metrics[k] is None else metrics[k] for k in HEADLINE},
        "metrics": dg.MetadataValue.md(metrics_markdown(metrics, SHOWN)),
        "prediction_metrics": dg.MetadataValue.md(
            "| metric | value |\n|---|---:|\n"
            + "\n".join(f"| {k} | {fmt_number(metrics[k])} |" for k in PREDICTION_SHOWN)
        ),
        "equity_curve": dg.MetadataValue.md(
            png_markdown(equity_png(ev.result, buy_and_hold(ev.result), title), "equity")
        ),
        "tearsheet": dg.MetadataValue.path(str(tearsheet)),
        "config": dg.MetadataValue.json(run_config_record(settings, costs=costs.as_dict())),
    }
