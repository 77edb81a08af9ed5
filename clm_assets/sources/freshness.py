"""How far the stored bars lag the source: the decision behind the ``data_freshness`` sensor.

A day is *behind* when the source has closed bars of it that are not stored: a complete
day, or today (a partition too when the deployment is live) as its bars close. The newest
bar at the source is probed with the source's own ``fetch`` (one or two days of bars), so
every source answers the same question the same way and a failing source raises its usual
``SourceError``.
"""

from __future__ import annotations

import pandas as pd

from clm_assets.sources.base import MarketDataSource
from clm_assets.sources.intervals import interval_delta

DAY = pd.Timedelta(days=1)


def newest_closed_bar(
    source: MarketDataSource, symbol: str, interval: str, now: pd.Timestamp
) -> pd.Timestamp | None:
    """Open time of the newest bar of ``symbol`` that has closed by ``now``, or None when
    the source has none in the two days before ``now``."""
    bar = interval_delta(interval)
    end = now.floor(bar)  # bars opening before it have closed by `now`
    start = end.floor("D") - DAY
    bars = source.fetch(symbol, interval, start, end)
    return None if bars.empty else pd.Timestamp(bars["open_time"].max())


def days_to_refresh(
    newest_stored: pd.Timestamp | None,
    newest_source: pd.Timestamp | None,
    interval: str,
    first_day: pd.Timestamp,
    end_day: pd.Timestamp | None,
) -> list[pd.Timestamp]:
    """The days whose stored bars lag the source's closed bars: from the newest stored
    bar's day (when bars of it are still to come) through the newest source bar's day,
    inside the partitions ``[first_day, end_day)``. The last one may be today, still
    filling. Nothing stored yet is not "behind": history is a backfill, not a tick."""
    if newest_stored is None or newest_source is None or newest_source <= newest_stored:
        return []
    bar = interval_delta(interval)
    stored_day = newest_stored.floor("D")
    first = stored_day if (newest_stored + bar).floor("D") == stored_day else stored_day + DAY
    last = newest_source.floor("D")
    if end_day is not None:
        last = min(last, end_day - DAY)
    first = max(first, first_day)
    return list(pd.date_range(first, last, freq="D")) if first <= last else []
