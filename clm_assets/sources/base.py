"""The contract every market-data source honours.

A source returns *closed* candles in the half-open range ``[start, end)``; it never pads,
invents or silently substitutes bars. Anything it cannot deliver is a ``SourceError``.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

OHLCV_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
)
"""Column order of every source frame. ``open_time`` is tz-aware UTC (bar open);
``quote_volume`` and ``trades`` are null where the source does not report them."""


class SourceError(RuntimeError):
    """A source could not deliver the requested candles. Nothing downstream may proceed."""


class UnknownSymbolError(SourceError):
    pass


class UnsupportedIntervalError(SourceError):
    pass


class EmptyRangeError(SourceError):
    pass


class OutOfRangeError(SourceError):
    """The requested range lies (partly) outside the data the source holds."""


class ExchangeUnavailableError(SourceError):
    """The exchange kept failing (rate limits, 5xx, timeouts, bad bodies) past the retry budget."""


class MarketDataSource(Protocol):
    """``fetch`` returns closed candles of ``symbol`` with bar opens in ``[start, end)``."""

    name: str

    def fetch(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame: ...


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a source's frame to ``OHLCV_COLUMNS`` with canonical dtypes.

    Missing optional columns (``quote_volume``, ``trades``) become nulls, never zeros: a zero
    would be a made-up number.
    """
    out = pd.DataFrame(index=range(len(frame)))
    times = frame["open_time"]
    if pd.api.types.is_numeric_dtype(times):
        raise SourceError("open_time must be datetimes; convert epoch numbers with their unit")
    # On the Series (not .to_numpy(), which boxes tz-aware values into Python objects).
    out["open_time"] = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns")
    for col in OHLCV_COLUMNS[1:6]:
        out[col] = pd.to_numeric(frame[col].to_numpy(), errors="raise").astype("float64")
    out["quote_volume"] = (
        pd.to_numeric(frame["quote_volume"].to_numpy()).astype("float64")
        if "quote_volume" in frame
        else float("nan")
    )
    out["trades"] = (
        pd.array(frame["trades"].to_numpy(), dtype="Int64")
        if "trades" in frame
        else pd.array([None] * len(frame), dtype="Int64")
    )
    return out


def check_range(start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Normalise ``[start, end)`` to UTC and reject empty or inverted ranges."""
    start, end = utc(start), utc(end)
    if end <= start:
        raise EmptyRangeError(f"empty range: start {start} is not before end {end}")
    return start, end


def utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """A tz-aware UTC timestamp; naive input is taken to be UTC already."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
