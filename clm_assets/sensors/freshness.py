"""``data_freshness``: request exactly the days whose closed bars at the source the store
lacks (today included in a live deployment), per symbol: raw bars, features, and the
production model paper-traded on them (``monitoring/live_performance``).

One run per symbol covers the days behind plus the days before them whose labels look
into them (features are recomputed there, so pending labels get filled); a symbol whose
previous run is still queued or running gets none. The run key
holds the newest closed bar at the source: Dagster never reuses a run key, so a new bar
is a new request, and the same bars seen twice are not. A source or the store failing is
a skipped tick naming the reason; the store is read with a read-only connection that
gives up after a few seconds (a long backfill holds the writer's lock).
"""

from __future__ import annotations

from collections.abc import Collection

import dagster as dg
import pandas as pd

from clm_assets.models.windows import horizon_days
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors import IN_PROCESS, market_now, sensor_options, tick_result
from clm_assets.settings import Settings
from clm_assets.sources.base import SourceError
from clm_assets.sources.freshness import DAY, days_to_refresh, newest_closed_bar
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError

SELECTION = [
    dg.AssetKey(["market_data", "raw_ohlcv"]),
    dg.AssetKey(["features", "features"]),
    dg.AssetKey(["monitoring", "live_performance"]),
]
"""New bars, their features, and the production model paper-traded on them."""
LOCK_WAIT_S = 5.0
SYMBOL_TAG = "clm/symbol"
IN_PROGRESS_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
"""A symbol with a freshness run in one of these gets no second one: overlapping runs
would pile up behind the one DuckDB writer and write the same days twice."""


def build_defs(settings: Settings) -> dg.Definitions:
    @dg.sensor(
        name="data_freshness",
        **sensor_options(settings),
        asset_selection=SELECTION,
        description="Requests the raw_ohlcv, features and live_performance days whose bars "
        "have closed at the source but are not stored, today included (and recomputes the "
        "day before, whose labels look into them).",
    )
    def data_freshness(
        context: dg.SensorEvaluationContext, market_data: MarketDataResource
    ) -> dg.SensorResult:
        busy = {
            r.dagster_run.tags.get(SYMBOL_TAG)
            for r in context.instance.get_run_records(
                dg.RunsFilter(
                    tags={"clm/trigger": "data_freshness"}, statuses=IN_PROGRESS_RUN_STATUSES
                )
            )
        }
        return tick_result(context, *freshness_tick(settings, market_data, busy=busy))

    return dg.Definitions(sensors=[data_freshness])


def newest_stored_bars(
    settings: Settings, schema: str = "market_data", table: str = "raw_ohlcv"
) -> dict[str, pd.Timestamp]:
    """Newest stored bar per symbol, read without ever taking the writer's lock."""
    store = DuckDBStore(settings.db_path, lock_timeout_s=LOCK_WAIT_S, read_only=True)
    if not store.table_exists(schema, table):
        return {}
    rows = store.query(
        f"SELECT symbol, max(open_time) AS newest FROM {schema}.{table} GROUP BY symbol"
    )
    return {r.symbol: pd.Timestamp(r.newest) for r in rows.itertuples()}


def freshness_tick(
    settings: Settings,
    market_data: MarketDataResource,
    now: pd.Timestamp | None = None,
    busy: Collection[str | None] = (),
) -> tuple[list[dg.RunRequest], list[str]]:
    """The run requests of one tick at ``now`` (default: the source's clock), and why every
    other symbol has none."""
    try:
        stored = newest_stored_bars(settings)
    except StorageError as exc:
        return [], [f"store not readable: {exc}"]
    source = market_data.build()
    if now is None:
        now, why = market_now(market_data)
        if now is None:
            return [], [why]
    ahead = horizon_days(settings.label_horizon, interval_delta(settings.interval))
    first_day = pd.Timestamp(settings.start_date, tz="UTC")
    end_day = None if settings.end_date is None else pd.Timestamp(settings.end_date, tz="UTC")
    requests, reasons = [], []
    for symbol in settings.symbols:
        if symbol in busy:  # its next run catches up on everything closed meanwhile
            reasons.append(f"{symbol}: a data_freshness run is queued or in progress")
            continue
        if symbol not in stored:
            reasons.append(f"{symbol}: nothing stored yet; backfill its history first")
            continue
        try:
            newest = newest_closed_bar(source, symbol, settings.interval, now)
        except SourceError as exc:
            reasons.append(f"{symbol}: source failed: {exc}")
            continue
        if newest is None:
            reasons.append(
                f"{symbol}: the source has no closed bar in the two days before {now} "
                "(an outage, a halted or delisted market): nothing to store"
            )
            continue
        days = days_to_refresh(stored[symbol], newest, settings.interval, first_day, end_day)
        if not days:
            reasons.append(f"{symbol}: up to date (stored {stored[symbol]}, source {newest})")
            continue
        start = max(days[0] - ahead * DAY, first_day)
        requests.append(
            dg.RunRequest(
                run_config=IN_PROCESS,
                run_key=f"{symbol}|{start:%Y-%m-%d}|{days[-1]:%Y-%m-%d}|{newest.isoformat()}",
                asset_selection=SELECTION,
                tags={
                    "dagster/asset_partition_range_start": f"{start:%Y-%m-%d}|{symbol}",
                    "dagster/asset_partition_range_end": f"{days[-1]:%Y-%m-%d}|{symbol}",
                    "clm/trigger": "data_freshness",
                    SYMBOL_TAG: symbol,
                    "clm/newest_stored_bar": stored[symbol].isoformat(),
                    "clm/newest_source_bar": newest.isoformat(),
                },
            )
        )
    return requests, reasons
