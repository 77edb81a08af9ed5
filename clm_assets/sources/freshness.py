"""How far the stored bars lag the source: the decision behind the ``data_freshness`` sensor.

Only whole UTC days are partitions, so a day is *due* once its last bar has closed at the
source, and *behind* when it is due and not stored. The newest bar at the source is probed
with the source's own ``fetch`` (one or two days of bars), so every source answers the
same question the same way and a failing source raises its usual ``SourceError``.
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


def days_behind(
    newest_stored: pd.Timestamp | None,
    newest_source: pd.Timestamp | None,
    interval: str,
    first_day: pd.Timestamp,
    end_day: pd.Timestamp | None,
) -> list[pd.Timestamp]:
    """The complete days after the newest stored bar's day that the source can fill:
    ``(day(newest_stored), last complete day]``, inside the partitions ``[first_day,
    end_day)``. Nothing stored yet is not "behind": history is a backfill, not a tick."""
    if newest_stored is None or newest_source is None:
        return []
    bar = interval_delta(interval)
    last_complete = (newest_source + bar).floor("D") - DAY  # its last bar has closed
    if end_day is not None:
        last_complete = min(last_complete, end_day - DAY)
    first = max(newest_stored.floor("D") + DAY, first_day)
    return list(pd.date_range(first, last_complete, freq="D")) if first <= last_complete else []
