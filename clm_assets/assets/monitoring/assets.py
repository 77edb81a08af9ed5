"""``monitoring/live_performance``: the production model of each symbol paper-traded on
every stored bar, per UTC day × symbol, with its divergence from what its backtest
promised.

The rows come from :func:`clm_assets.monitoring.paper.paper_day` (the walk-forward record
of the automatic decisions, left open at its end); the divergence from
:func:`clm_assets.monitoring.divergence.divergence`, the same test the
``performance_degradation`` sensor runs, so the UI shows what the sensor acts on.
"""

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DUCKDB_POOL, day_ranges, preview, run_config_record
from clm_assets.backtest.report import png_markdown
from clm_assets.backtest.window import context_days
from clm_assets.monitoring.degradation import DetectorConfig
from clm_assets.monitoring.divergence import (
    Divergence,
    NoExpectationError,
    divergence,
    divergence_png,
)
from clm_assets.monitoring.paper import NO_CHAMPION, PaperDay, paper_days
from clm_assets.partitions import (
    DATE,
    MARKET_PARTITION_EXPR,
    SYMBOL,
    as_of_window,
    market_partitions,
    model_partitions,
)
from clm_assets.registry.decisions import AUTOMATIC_ACTIONS
from clm_assets.registry.promotion import history
from clm_assets.resources.backtest import BacktestResource
from clm_assets.resources.degradation import DegradationResource
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore

KEY = dg.AssetKey(["monitoring", "live_performance"])
IN_FORCE = dg.MultiPartitionMapping(
    {
        DATE: dg.DimensionPartitionMapping(
            DATE,
            # the decisions of the as-ofs that end on or just before the day
            dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        ),
        SYMBOL: dg.DimensionPartitionMapping(SYMBOL, dg.IdentityPartitionMapping()),
    }
)


def build_defs(settings: Settings) -> dg.Definitions:
    @dg.asset(
        key=KEY,
        group_name="monitoring",
        partitions_def=market_partitions(settings),
        deps=[
            dg.AssetDep(["features", "features"]),
            dg.AssetDep(["promotion", "promoted_model"], partition_mapping=IN_FORCE),
        ],
        io_manager_key="duckdb_io",
        pool=DUCKDB_POOL,
        metadata={"partition_expr": MARKET_PARTITION_EXPR},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "pandas"},
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        backtest: BacktestResource,
        degradation: DegradationResource,
    ) -> dg.Output[pd.DataFrame]:
        """Paper trading: each bar of the day traded by the champion in production then,
        from the decision that promoted it, by the backtest engine (next-open fills, the
        deployment's fees); a symbol without a champion is flat and says so. Per partition:
        the champion, the day's return, the pending order, and the live record since
        promotion against its own backtest (CUSUM statistic and threshold, drawdown vs
        floor, plots).
        """
        costs, config = backtest.costs(), degradation.detector()
        model_parts = model_partitions(settings)
        context_span = context_days(interval_delta(settings.interval)) * pd.Timedelta(days=1)
        store = storage.store
        frames = []
        for symbol, ranges in day_ranges(context).items():
            with store.connect() as conn:
                decided = history(conn, symbol)
            automatic = decided[decided["action"].isin(AUTOMATIC_ACTIONS)]
            automatic = automatic.drop_duplicates("as_of", keep="last")  # a re-run decides anew
            ends = {
                pd.Timestamp(a): as_of_window(model_parts, pd.Timestamp(a))[1]
                for a in automatic["as_of"]
            }
            for start, end in ranges:
                days = paper_days(
                    store,
                    symbol,
                    settings.interval,
                    automatic,
                    ends,
                    start,
                    end - pd.Timedelta(days=1),
                    context=context_span,
                    costs=costs,
                )
                for paper in days:
                    frames.append(paper.rows)
                    context.add_asset_metadata(
                        day_metadata(paper, store, settings, config),
                        partition_key=dg.MultiPartitionKey(
                            {DATE: f"{paper.day:%Y-%m-%d}", SYMBOL: symbol}
                        ),
                    )
        frame = pd.concat(frames, ignore_index=True)
        return dg.Output(
            frame,
            metadata={
                "step_rows": len(frame),
                "config": dg.MetadataValue.json(
                    run_config_record(settings, costs=costs.as_dict(), degradation=config.__dict__)
                ),
                "preview": preview(
                    frame, ["open_time", "symbol", "champion", "position", "return", "equity"]
                ),
            },
        )

    return dg.Definitions(assets=[live_performance])


def day_metadata(
    paper: PaperDay, store: DuckDBStore, settings: Settings, config: DetectorConfig
) -> dict:
    """One partition's own paper day and, when a champion trades, its divergence."""
    rows = paper.rows
    champions = [c for c in rows["champion"].unique() if c != NO_CHAMPION]
    out: dict = {
        "status": "trading" if champions else "flat, no champion",
        "champion": ", ".join(champions) or NO_CHAMPION,
        "bars": len(rows),
        "day_return": float((1 + rows["return"]).prod() - 1),
        "day_cost": float(rows["cost"].sum()),
        "pending_order": "n/a" if paper.pending_position is None else paper.pending_position,
        "last_bar": rows["open_time"].iloc[-1].isoformat(),
    }
    if paper.record.empty:
        return out
    try:
        with store.connect() as conn:
            div = divergence(paper.record, conn, settings.interval, config)
    except NoExpectationError as exc:
        out["divergence"] = f"not judged: {exc}"
        return out
    if div is None:
        return out
    return {**out, **_divergence_metadata(div, config, settings.interval)}


def _divergence_metadata(div: Divergence, config: DetectorConfig, interval: str) -> dict:
    v = div.verdict
    return {
        "degradation": "FIRED" if v.fired else "ok",
        "degradation_rule": v.rule or "none",
        "cusum": v.statistic if v.rule != "drawdown" else "n/a",
        "cusum_threshold": config.threshold,
        "live_drawdown": v.drawdown,
        "drawdown_floor": v.drawdown_floor,
        "degradation_reason": v.reason,
        "expectation": div.expectation.label,
        "divergence": dg.MetadataValue.md(div.table(interval)),
        "divergence_plot": dg.MetadataValue.md(
            png_markdown(divergence_png(div, config), "live vs backtest")
        ),
    }
