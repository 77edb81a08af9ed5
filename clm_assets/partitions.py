"""Partitions shared by every group: UTC days × symbols.

Symbol keys come from settings and never contain ``,`` or ``|`` (Dagster's range and
multi-key separators). Models, backtests and promotion use the same definition with the
day read as the *as-of* date.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pandas as pd

from clm_assets.settings import Settings, SettingsError

DATE = "date"
DAILY = "0 0 * * *"
SYMBOL = "symbol"
MARKET_PARTITION_EXPR = {DATE: "open_time", SYMBOL: "symbol"}
"""Bar-level assets: a day partition is the bars that open on that UTC day."""
AS_OF_PARTITION_EXPR = {DATE: "as_of", SYMBOL: "symbol"}
"""Model-level assets: a partition is the rows made as of that partition's start."""


def market_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            DATE: dg.DailyPartitionsDefinition(
                start_date=settings.start_date,
                end_date=settings.end_date,
                timezone="UTC",
                # live: today is a partition too, re-materialized as its bars close
                end_offset=1 if settings.live else 0,
            ),
            SYMBOL: dg.StaticPartitionsDefinition(list(settings.symbols)),
        }
    )


def window_mapping(days_before: int, days_after: int = 0) -> dg.MultiPartitionMapping:
    """Same symbol, days ``[d - days_before, d + days_after]`` of the upstream asset.

    Days before the first partition are allowed (the earliest partitions warm up on what
    exists); the consumer must check what it actually got, because a missing upstream day
    silently loads zero rows.
    """
    return dg.MultiPartitionMapping(
        {
            DATE: dg.DimensionPartitionMapping(
                DATE,
                dg.TimeWindowPartitionMapping(
                    start_offset=-days_before,
                    end_offset=days_after,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            SYMBOL: dg.DimensionPartitionMapping(SYMBOL, dg.IdentityPartitionMapping()),
        }
    )


def model_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """As-of × symbol. Daily by default; any cron cadence (e.g. every 6 hours) works."""
    if settings.model_cron == DAILY:
        return market_partitions(settings)
    sub_daily = not settings.model_cron.startswith("0 0 ")
    return dg.MultiPartitionsDefinition(
        {
            DATE: dg.TimeWindowPartitionsDefinition(
                cron_schedule=settings.model_cron,
                # datetimes, not strings: Dagster parses a string with ``fmt``, so a
                # sub-daily cadence would demand dates written as 2017-07-02-00:00
                start=_utc_datetime(settings.start_date),
                end=None if settings.end_date is None else _utc_datetime(settings.end_date),
                fmt="%Y-%m-%d-%H:%M" if sub_daily else "%Y-%m-%d",
                timezone="UTC",
            ),
            SYMBOL: dg.StaticPartitionsDefinition(list(settings.symbols)),
        }
    )


RETRAINS_CHECKED = 64
"""Retrain times checked against the as-of grid when the definitions load."""


def retrain_ticks(settings: Settings) -> dg.TimeWindowPartitionsDefinition:
    """The retrain cadence (``CLM_RETRAIN_CRON``, else the as-of grid itself) as windows;
    each window end is a retrain time, and must be an as-of boundary of the model grid so
    that the as-of it retrains exists."""
    grid = model_partitions(settings).partitions_defs[0].partitions_def
    assert isinstance(grid, dg.TimeWindowPartitionsDefinition)
    if settings.retrain_cron is None:
        return grid
    try:
        ticks = dg.TimeWindowPartitionsDefinition(
            cron_schedule=settings.retrain_cron,
            start=_utc_datetime(settings.start_date),
            fmt="%Y-%m-%d-%H:%M",
            timezone="UTC",
        )
    except Exception as exc:  # Dagster raises several types for a malformed cron
        raise SettingsError(f"CLM_RETRAIN_CRON={settings.retrain_cron!r}: {exc}") from None
    window = ticks.get_first_partition_window()
    for _ in range(RETRAINS_CHECKED):
        if window is None:
            break
        key = grid.get_partition_key_for_timestamp(window.end.timestamp())
        if grid.time_window_for_partition_key(key).start != window.end:
            raise SettingsError(
                f"CLM_RETRAIN_CRON={settings.retrain_cron!r} retrains at "
                f"{window.end:%Y-%m-%d %H:%M}, which is not an as-of boundary of "
                f"CLM_MODEL_CRON={settings.model_cron!r}"
            )
        window = ticks.get_next_partition_window(window.end)
    return ticks


def _utc_datetime(day: str) -> datetime:
    return pd.Timestamp(day, tz="UTC").to_pydatetime()


def as_of_window(
    partitions: dg.MultiPartitionsDefinition, as_of: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The as-of partition window that starts at ``as_of`` (its end is the as-of time)."""
    time_def = partitions.partitions_defs[0].partitions_def
    assert isinstance(time_def, dg.TimeWindowPartitionsDefinition)
    key = time_def.get_partition_key_for_timestamp(pd.Timestamp(as_of).timestamp())
    return as_of_bounds(partitions, key)


def as_of_bounds(
    partitions: dg.MultiPartitionsDefinition, date_key: str
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(as_of, as_of_end)`` of a date key: models are stamped with the start, and their
    windows end at the end, when the partition's bars are complete."""
    time_def = partitions.partitions_defs[0].partitions_def
    assert isinstance(time_def, dg.TimeWindowPartitionsDefinition)
    window = time_def.time_window_for_partition_key(date_key)
    return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")


def partition_key_of(
    partitions: dg.MultiPartitionsDefinition, as_of: pd.Timestamp, symbol: str
) -> str:
    """The as-of × symbol key of an as-of time: where a step attaches that partition's own
    metadata when it handles several partitions."""
    time_def = partitions.partitions_defs[0].partitions_def
    assert isinstance(time_def, dg.TimeWindowPartitionsDefinition)
    date_key = time_def.get_partition_key_for_timestamp(pd.Timestamp(as_of).timestamp())
    return str(dg.MultiPartitionKey({DATE: date_key, SYMBOL: symbol}))
