"""``scheduled_retraining``: every family retrains for each as-of partition of the model
cadence (``CLM_MODEL_CRON``) once it has ended AND its features are stored; evaluation and
promotion follow in the same run.

A plain schedule would fire at the partition's end, a minute before the freshness sensor
has stored its last bars, and fail; this sensor waits for the data instead, and its run key
is the partition, so each as-of × symbol is requested once however often it ticks.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from clm_assets.partitions import as_of_window, model_partitions, partition_key_of
from clm_assets.sensors import tick_result
from clm_assets.sensors.freshness import newest_stored_bars
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import StorageError

SELECTION = dg.AssetSelection.groups("training", "evaluation", "promotion")


def build_defs(settings: Settings) -> dg.Definitions:
    @dg.sensor(
        name="scheduled_retraining",
        minimum_interval_seconds=60,
        asset_selection=SELECTION,
        description=f"Retrains every family for each as-of partition ({settings.model_cron}) "
        "once it has ended and its features are stored; evaluation and promotion follow.",
    )
    def scheduled_retraining(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return tick_result(context, *retraining_tick(settings, pd.Timestamp.now(tz="UTC")))

    return dg.Definitions(sensors=[scheduled_retraining])


def retraining_tick(settings: Settings, now: pd.Timestamp) -> tuple[list[dg.RunRequest], list[str]]:
    """The run requests of one tick at ``now`` (the newest ended as-of, per symbol whose
    features reach its end), and why every other symbol has none."""
    partitions = model_partitions(settings)
    if settings.end_date is not None and now >= pd.Timestamp(settings.end_date, tz="UTC"):
        return [], [f"the as-of partitions end {settings.end_date}; nothing new to train"]
    current, _ = as_of_window(partitions, now)
    if current <= pd.Timestamp(settings.start_date, tz="UTC"):
        return [], ["no as-of partition has ended yet"]
    as_of, as_of_end = as_of_window(partitions, current - pd.Timedelta(seconds=1))
    try:
        stored = newest_stored_bars(settings, "features", "features")
    except StorageError as exc:
        return [], [f"store not readable: {exc}"]
    last_bar = as_of_end - interval_delta(settings.interval)
    requests, reasons = [], []
    for symbol in settings.symbols:
        key = partition_key_of(partitions, as_of, symbol)
        newest = stored.get(symbol)
        if newest is None or newest < last_bar:
            reasons.append(f"{key}: waiting for features up to {last_bar} (stored: {newest})")
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"retrain|{key}",
                partition_key=key,
                tags={"clm/trigger": "scheduled_retraining", "clm/cadence": settings.model_cron},
            )
        )
    return requests, reasons
