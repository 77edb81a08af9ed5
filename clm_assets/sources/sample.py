"""The bundled real BTC-USD sample, replayed offline as a market-data source.

The demo and the tests must run without a network, yet everything downstream (features,
models, backtests) should meet real market microstructure rather than a simulation. So the
package ships ~18 months of real Coinbase hourly candles (see ``clm_assets/data/NOTICE``)
and this source serves exactly those bars, never more: outside the recorded span it raises.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import ClassVar

import numpy as np
import pandas as pd

from clm_assets.sources.base import (
    EmptyRangeError,
    OutOfRangeError,
    SourceError,
    UnknownSymbolError,
    UnsupportedIntervalError,
    check_range,
    to_canonical,
)
from clm_assets.sources.intervals import INTERVALS, interval_delta

SAMPLE_SYMBOL = "BTC-USD"
SAMPLE_FILE = "coinbase_btcusd_1h_2017_2018.csv.gz"
NATIVE_INTERVAL = "1h"

_HOUR = pd.Timedelta(hours=1)
_PRICE_COLUMNS = ("open", "high", "low", "close")
_VALUE_COLUMNS = (*_PRICE_COLUMNS, "volume", "quote_volume")

SAMPLE_INTERVALS: tuple[str, ...] = tuple(
    name for name, delta in INTERVALS.items() if delta >= _HOUR and delta % _HOUR == pd.Timedelta(0)
)
"""Intervals the sample can serve: the native 1h and whole multiples of it. Finer bars would
have to be invented, so they are refused."""


class SampleSource:
    """Replays the bundled real Coinbase BTC-USD hourly candles.

    Coarser intervals are aggregated from whole hours only, because a 4h bar built from three
    hours would be a different (and misleading) candle; with the coverage check every bucket
    whose open lies in the range is complete, and incomplete ones are dropped, not padded.
    """

    name = "sample"
    symbol: ClassVar[str] = SAMPLE_SYMBOL
    intervals: ClassVar[tuple[str, ...]] = SAMPLE_INTERVALS
    first_full_day: ClassVar[pd.Timestamp] = pd.Timestamp("2017-07-02", tz="UTC")
    """First UTC day with all 24 hourly bars (the data starts 2017-07-01T11:00Z); daily
    partitions over the sample start here."""
    last_full_day: ClassVar[pd.Timestamp] = pd.Timestamp("2018-12-31", tz="UTC")
    """Last UTC day with all 24 hourly bars (inclusive); a daily partitions definition's
    exclusive end date is the day after."""

    @property
    def coverage(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """``[first bar open, last bar open + 1h)``, read from the data itself."""
        open_ns = _load_hourly()["open_time_ns"]
        return (
            pd.Timestamp(int(open_ns[0]), tz="UTC"),
            pd.Timestamp(int(open_ns[-1]), tz="UTC") + _HOUR,
        )

    def fetch(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Real candles of ``BTC-USD`` with bar opens in ``[start, end)``.

        Raises ``OutOfRangeError`` unless the whole range lies inside ``coverage``: a range
        that pokes out would otherwise come back silently short.
        """
        if symbol != SAMPLE_SYMBOL:
            raise UnknownSymbolError(
                f"the {self.name} source has no symbol {symbol!r}; it holds only {SAMPLE_SYMBOL!r}"
            )
        delta = interval_delta(interval)
        if interval not in SAMPLE_INTERVALS:
            raise UnsupportedIntervalError(
                f"the {self.name} source holds {NATIVE_INTERVAL} bars and cannot serve the finer "
                f"interval {interval!r}; supported: {', '.join(SAMPLE_INTERVALS)}"
            )
        start, end = check_range(start, end)
        first, stop = self.coverage
        if start < first or end > stop:
            raise OutOfRangeError(
                f"requested [{start.isoformat()}, {end.isoformat()}) of {symbol} {interval} is not "
                f"inside the {self.name} source's coverage [{first.isoformat()}, "
                f"{stop.isoformat()})"
            )
        bars = _bars(delta.value, start.value, end.value)
        if len(bars["open_time"]) == 0:
            raise EmptyRangeError(
                f"[{start.isoformat()}, {end.isoformat()}) holds no {interval} bar open"
            )
        # Naive datetime64 (UTC): to_canonical converts it without a per-row object path.
        bars["open_time"] = bars["open_time"].view("datetime64[ns]")
        return to_canonical(pd.DataFrame(bars))


def _bars(delta_ns: int, start_ns: int, end_ns: int) -> dict[str, np.ndarray]:
    """Bars of length ``delta_ns`` (a whole number of hours) opening in ``[start_ns, end_ns)``."""
    data = _load_hourly()
    open_ns = data["open_time_ns"]
    # A bucket opening in [start, end) is fed by the hours in [ceil(start), ceil(end)) on the
    # bucket grid, which is aligned to the Unix epoch and hence to UTC midnight.
    lo = int(np.searchsorted(open_ns, -(-start_ns // delta_ns) * delta_ns, side="left"))
    hi = int(np.searchsorted(open_ns, -(-end_ns // delta_ns) * delta_ns, side="left"))
    hours = {key: values[lo:hi] for key, values in data.items()}
    if delta_ns == _HOUR.value or hi == lo:
        return {"open_time": hours["open_time_ns"], **{c: hours[c] for c in _VALUE_COLUMNS}}
    return _aggregate(hours, delta_ns)


def _aggregate(hours: dict[str, np.ndarray], delta_ns: int) -> dict[str, np.ndarray]:
    """OHLCV of the complete buckets: open first, high max, low min, close last, volumes sum."""
    bucket = hours["open_time_ns"] // delta_ns
    starts = np.flatnonzero(np.diff(bucket, prepend=bucket[0] - 1))
    ends = np.append(starts[1:], len(bucket))
    complete = (ends - starts) == delta_ns // _HOUR.value
    if not complete.any():
        return {"open_time": bucket[:0], **{c: hours[c][:0] for c in _VALUE_COLUMNS}}
    # reduceat spans the whole input between consecutive indices, so reduce over all buckets
    # and then keep the complete ones.
    return {
        "open_time": bucket[starts][complete] * delta_ns,
        "open": hours["open"][starts][complete],
        "high": np.maximum.reduceat(hours["high"], starts)[complete],
        "low": np.minimum.reduceat(hours["low"], starts)[complete],
        "close": hours["close"][ends - 1][complete],
        "volume": np.add.reduceat(hours["volume"], starts)[complete],
        "quote_volume": np.add.reduceat(hours["quote_volume"], starts)[complete],
    }


@functools.cache
def _load_hourly() -> dict[str, np.ndarray]:
    """Parse the bundled csv once per process into read-only arrays.

    Read-only so that no caller can corrupt the cache; validated on load so that a damaged
    or edited file fails loudly here instead of producing gaps or impossible candles later.
    """
    path = resources.files("clm_assets") / "data" / SAMPLE_FILE
    with resources.as_file(path) as file:
        frame = pd.read_csv(file, engine="pyarrow")
    expected = ["open_time", *_VALUE_COLUMNS]
    if list(frame.columns) != expected:
        raise SourceError(f"{SAMPLE_FILE}: columns {list(frame.columns)}, expected {expected}")
    open_time = pd.to_datetime(frame["open_time"], utc=True).astype("datetime64[ns, UTC]")
    data = {"open_time_ns": pd.DatetimeIndex(open_time).asi8.copy()}
    for col in _VALUE_COLUMNS:
        data[col] = frame[col].to_numpy(dtype="float64", copy=True)
    _validate(data)
    for values in data.values():
        values.setflags(write=False)
    return data


def _validate(data: dict[str, np.ndarray]) -> None:
    open_ns = data["open_time_ns"]
    if len(open_ns) == 0:
        raise SourceError(f"{SAMPLE_FILE} holds no bars")
    if np.any(open_ns % _HOUR.value) or np.any(np.diff(open_ns) != _HOUR.value):
        raise SourceError(f"{SAMPLE_FILE}: bars are not consecutive whole hours (gap or disorder)")
    values = np.column_stack([data[col] for col in _VALUE_COLUMNS])
    if not np.all(np.isfinite(values)):
        raise SourceError(f"{SAMPLE_FILE}: non-finite prices or volumes")
    o, h, lo, c = (data[col] for col in _PRICE_COLUMNS)
    if np.any(h < np.maximum(o, c)) or np.any(lo > np.minimum(o, c)) or np.any(lo <= 0):
        raise SourceError(f"{SAMPLE_FILE}: candles violate low <= open, close <= high")
