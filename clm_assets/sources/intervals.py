"""Bar intervals shared by every source, in the notation exchanges use (``1m`` … ``1d``)."""

from __future__ import annotations

import pandas as pd

from clm_assets.sources.base import UnsupportedIntervalError

# Only intervals that tile a UTC day exactly: daily partitions must hold whole bars.
INTERVALS: dict[str, pd.Timedelta] = {
    name: pd.Timedelta(name.replace("m", "min"))
    for name in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
}


def interval_delta(interval: str) -> pd.Timedelta:
    """The length of one bar; an interval outside ``INTERVALS`` is an error, not a guess."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise UnsupportedIntervalError(
            f"unsupported interval {interval!r}; supported: {', '.join(INTERVALS)}"
        ) from None


def bars_per_year(interval: str) -> float:
    """Annualisation factor for a 24/7 market (8760 for hourly bars)."""
    return pd.Timedelta(days=365) / interval_delta(interval)
