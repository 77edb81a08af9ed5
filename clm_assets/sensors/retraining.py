"""``scheduled_retraining``: every family retrains for each as-of the retrain cadence
(``CLM_RETRAIN_CRON``, else every as-of of ``CLM_MODEL_CRON``) ends on, once that as-of
has ended AND its features are stored; evaluation and promotion follow in the same run.

A plain schedule would fire at the partition's end, a minute before the freshness sensor
has stored its last bars, and fail; this sensor waits for the data instead, and its run key
is the partition, so each as-of × symbol is requested once however often it ticks. The
as-ofs between two retrain times belong to ``performance_degradation`` (``retrain_request``
is shared): the two sensors never request the same as-of.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from clm_assets.partitions import as_of_window, model_partitions, partition_key_of, retrain_ticks
from clm_assets.registry.promotion import newest_decided
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors import IN_PROCESS, market_now, sensor_options, tick_result
from clm_assets.sensors.freshness import LOCK_WAIT_S, newest_stored_bars
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError

SELECTION = dg.AssetSelection.groups("training", "evaluation", "promotion")


def build_defs(settings: Settings) -> dg.Definitions:
    retrain_ticks(settings)  # a retrain time off the as-of grid fails at load

    @dg.sensor(
        name="scheduled_retraining",
        **sensor_options(settings),
        asset_selection=SELECTION,
        description=f"Retrains every family at each retrain time ({settings.retrain_schedule}) "
        "once that as-of has ended and its features are stored; evaluation and promotion "
        "follow.",
    )
    def scheduled_retraining(
        context: dg.SensorEvaluationContext, market_data: MarketDataResource
    ) -> dg.SensorResult:
        now, why = market_now(market_data)
        if now is None:
            return dg.SensorResult(skip_reason=why)
        return tick_result(context, *retraining_tick(settings, now))

    return dg.Definitions(sensors=[scheduled_retraining])


def is_retrain_time(ticks: dg.TimeWindowPartitionsDefinition, when: pd.Timestamp) -> bool:
    """Whether the retrain cadence (``partitions.retrain_ticks``) fires at ``when``."""
    key = ticks.get_partition_key_for_timestamp((when - pd.Timedelta(seconds=1)).timestamp())
    return pd.Timestamp(ticks.time_window_for_partition_key(key).end) == when


def newest_ended_as_of(
    settings: Settings, now: pd.Timestamp, *, scheduled: bool
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """``(as_of, as_of_end)`` of the newest as-of that has ended by ``now`` (``scheduled``:
    the newest whose end is a retrain time), or None before the first."""
    partitions = model_partitions(settings)
    if settings.end_date is not None:  # the last as-of ends there
        now = min(now, pd.Timestamp(settings.end_date, tz="UTC"))
    as_of, as_of_end = as_of_window(partitions, now - pd.Timedelta(seconds=1))
    first = pd.Timestamp(settings.start_date, tz="UTC")
    ticks = retrain_ticks(settings) if scheduled else None
    while as_of >= first:
        if as_of_end <= now and (ticks is None or is_retrain_time(ticks, as_of_end)):
            return as_of, as_of_end
        as_of, as_of_end = as_of_window(partitions, as_of - pd.Timedelta(seconds=1))
    return None


def retrain_request(
    settings: Settings, symbol: str, as_of: pd.Timestamp, tags: dict[str, str]
) -> dg.RunRequest:
    """Every family, its evaluation and the promotion decision for (``as_of``, ``symbol``).
    The run key is the partition: whichever sensor asks, an as-of is retrained once."""
    key = partition_key_of(model_partitions(settings), as_of, symbol)
    return dg.RunRequest(
        run_key=f"retrain|{key}", partition_key=key, tags=tags, run_config=IN_PROCESS
    )


def _newest_decided(settings: Settings) -> dict[str, pd.Timestamp]:
    store = DuckDBStore(settings.db_path, lock_timeout_s=LOCK_WAIT_S, read_only=True)
    if not store.table_exists("registry", "promotions"):
        return {}
    with store.connect() as conn:
        return newest_decided(conn)


def retraining_tick(settings: Settings, now: pd.Timestamp) -> tuple[list[dg.RunRequest], list[str]]:
    """The run requests of one tick at ``now`` (the newest ended as-of at a retrain time,
    per symbol whose features reach its end), and why every other symbol has none."""
    if settings.end_date is not None and now >= pd.Timestamp(settings.end_date, tz="UTC"):
        return [], [f"the as-of partitions end {settings.end_date}; nothing new to train"]
    newest = newest_ended_as_of(settings, now, scheduled=True)
    if newest is None:
        return [], ["no retrain time has passed yet"]
    as_of, as_of_end = newest
    try:
        stored = newest_stored_bars(settings, "features", "features")
        decided = _newest_decided(settings)
    except StorageError as exc:
        return [], [f"store not readable: {exc}"]
    last_bar = as_of_end - interval_delta(settings.interval)
    requests, reasons = [], []
    for symbol in settings.symbols:
        key = partition_key_of(model_partitions(settings), as_of, symbol)
        if symbol in decided and decided[symbol] > as_of:
            reasons.append(
                f"{key}: as-of {decided[symbol]} is already decided; retraining the older "
                f"as-of {as_of} would rewrite newer history"
            )
            continue
        newest_features = stored.get(symbol)
        if newest_features is None or newest_features < last_bar:
            reasons.append(
                f"{key}: waiting for features up to {last_bar} (stored: {newest_features})"
            )
            continue
        tags = {"clm/trigger": "scheduled_retraining", "clm/cadence": settings.retrain_schedule}
        requests.append(retrain_request(settings, symbol, as_of, tags))
    return requests, reasons
