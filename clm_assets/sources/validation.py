"""Candle validation: what is rejected, what is repaired, and every count recorded.

Policy (a partition is either stored clean or not stored at all):

- **Rejected** (``CandleValidationError``, nothing written): NaN in a price or volume,
  a non-positive price, negative volume, bars whose open time is off the interval grid
  or outside the partition, and duplicate bars that disagree (which one is true is
  unknowable).
- **Repaired** (counted in metadata): exact duplicate bars (pagination overlap) are
  dropped; out-of-order bars are sorted; a high below ``max(open, close)`` is raised to
  it and a low above ``min(open, close)`` is lowered to it — the open and close are
  traded prices, so the range must contain them.
- **Reported, never filled**: gaps. A missing bar is not invented; the count and the
  first missing times go to metadata and a (non-blocking) asset check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from clm_assets.sources.base import SourceError
from clm_assets.sources.intervals import interval_delta

PRICE_COLUMNS = ("open", "high", "low", "close")


class CandleValidationError(SourceError):
    """The candles break a rule that cannot be repaired without guessing."""


@dataclass
class ValidationReport:
    rows_in: int
    rows_out: int = 0
    duplicates_dropped: int = 0
    reordered_rows: int = 0
    highs_repaired: int = 0
    lows_repaired: int = 0
    missing_bars: int = 0
    first_missing: list[str] = field(default_factory=list)

    @property
    def repairs(self) -> int:
        return (
            self.duplicates_dropped
            + self.reordered_rows
            + self.highs_repaired
            + (self.lows_repaired)
        )

    def as_dict(self) -> dict[str, int | list[str]]:
        return asdict(self)


def validate_candles(
    bars: pd.DataFrame, interval: str, start: pd.Timestamp, end: pd.Timestamp, label: str
) -> tuple[pd.DataFrame, ValidationReport]:
    """Apply the policy to the bars of ``[start, end)``; ``label`` names them in errors."""
    step = interval_delta(interval)
    report = ValidationReport(rows_in=len(bars))
    _reject_bad_values(bars, label)
    times = bars["open_time"]
    off_grid = (times - pd.Timestamp(0, tz="UTC")) % step != pd.Timedelta(0)
    if off_grid.any():
        raise CandleValidationError(
            f"{label}: {int(off_grid.sum())} bars are not aligned to {interval} "
            f"(first {times[off_grid].iloc[0]})"
        )
    outside = (times < start) | (times >= end)
    if outside.any():
        raise CandleValidationError(
            f"{label}: {int(outside.sum())} bars outside [{start}, {end}) "
            f"(first {times[outside].iloc[0]})"
        )

    ordered = bars.sort_values("open_time", kind="stable").reset_index(drop=True)
    report.reordered_rows = int((ordered["open_time"].to_numpy() != times.to_numpy()).sum())

    dup_time = ordered["open_time"].duplicated(keep=False)
    if dup_time.any():
        exact = ordered.duplicated(keep="first")
        # Judged after dropping exact copies: two versions of a bar, each sent twice, conflict.
        distinct = ordered[~exact]
        conflicting = distinct[distinct["open_time"].duplicated(keep=False)]
        if not conflicting.empty:
            raise CandleValidationError(
                f"{label}: {conflicting['open_time'].nunique()} bar times carry conflicting "
                f"values (first {conflicting['open_time'].iloc[0]})"
            )
        report.duplicates_dropped = int(exact.sum())
        ordered = ordered[~exact].reset_index(drop=True)

    o, h, lo, c = (ordered[col].to_numpy() for col in PRICE_COLUMNS)
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    report.highs_repaired = int((h < top).sum())
    report.lows_repaired = int((lo > bottom).sum())
    if report.highs_repaired or report.lows_repaired:
        ordered = ordered.copy()
        ordered["high"] = np.maximum(h, top)
        ordered["low"] = np.minimum(lo, bottom)

    missing = missing_bar_times(ordered["open_time"], step, start, end)
    report.missing_bars = len(missing)
    report.first_missing = [t.isoformat() for t in missing[:5]]
    report.rows_out = len(ordered)
    return ordered, report


def missing_bar_times(
    times: pd.Series, step: pd.Timedelta, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DatetimeIndex:
    """Bar opens of ``[start, end)`` on the interval grid that ``times`` lacks."""
    expected = pd.date_range(start, end, freq=step, inclusive="left")
    return expected.difference(pd.DatetimeIndex(times))


def _reject_bad_values(bars: pd.DataFrame, label: str) -> None:
    values = bars[[*PRICE_COLUMNS, "volume"]]
    nan = values.isna()
    if nan.any().any():
        cols = nan.columns[nan.any()].tolist()
        raise CandleValidationError(f"{label}: NaN in {cols} ({int(nan.sum().sum())} values)")
    nonpositive = (bars[list(PRICE_COLUMNS)] <= 0).any(axis=1)
    if nonpositive.any():
        raise CandleValidationError(
            f"{label}: {int(nonpositive.sum())} bars with a non-positive price "
            f"(first {bars.loc[nonpositive, 'open_time'].iloc[0]})"
        )
    negative = bars["volume"] < 0
    if negative.any():
        raise CandleValidationError(
            f"{label}: {int(negative.sum())} bars with negative volume "
            f"(first {bars.loc[negative, 'open_time'].iloc[0]})"
        )


def check_candles(
    bars: pd.DataFrame,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    expected_rows: int | None,
) -> dict[str, int]:
    """Violations of the stored-candle invariants in the rows of ``[start, end)`` as read
    back from storage (in storage order), counted independently of the repairs.

    ``expected_rows`` is what the writing step stored; ``None`` (no record of a write) is a
    violation of its own. These feed the blocking asset check: all zeros is the only pass.
    """
    step = interval_delta(interval)
    t = bars["open_time"]
    o, h, lo, c = (bars[col] for col in PRICE_COLUMNS)
    values = bars[[*PRICE_COLUMNS, "volume"]].to_numpy(dtype="float64", na_value=np.nan)
    return {
        "duplicate_bars": int(t.duplicated().sum()),
        "unsorted_bars": int((t.diff() <= pd.Timedelta(0)).sum()),
        "off_grid_bars": int(((t - pd.Timestamp(0, tz="UTC")) % step != pd.Timedelta(0)).sum()),
        "bars_outside_partition": int(((t < start) | (t >= end)).sum()),
        "ohlc_violations": int(((h < o) | (h < c) | (lo > o) | (lo > c) | (lo > h)).sum()),
        "nonpositive_prices": int((bars[list(PRICE_COLUMNS)] <= 0).any(axis=1).sum()),
        "non_finite_values": int((~np.isfinite(values)).sum()),
        "negative_volume": int((bars["volume"] < 0).sum()),
        "row_count_mismatch": 1 if expected_rows is None else abs(len(bars) - expected_rows),
    }
