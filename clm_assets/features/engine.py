"""Array plumbing for the features frame: input checks, one preallocated block, one frame.

Every output column is a contiguous column of a single Fortran-ordered float64 array that
becomes the frame's only float block without a copy; writers fill it in place so that no
intermediate frame (or per-column pandas object) is ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from clm_assets.features.schema import KEY_COLUMNS

NAN = np.nan
SEGMENT_ROWS = 64
"""Output rows per segment of the windowed sums (see ``rolling_mean_std``)."""
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class Bars:
    """One symbol's bars as contiguous float64 arrays plus UTC epoch nanoseconds."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    open_time: pd.Series
    epoch_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


def read_bars(bars: pd.DataFrame, symbol: str) -> Bars:
    """Check and unpack one symbol's bars (ascending, unique ``open_time``, tz-aware).

    Raises ``ValueError`` for anything the features cannot honestly be computed from:
    missing columns, a naive or unsorted/duplicated ``open_time``, another symbol's rows,
    non-positive or non-finite prices, negative or non-finite volume.
    """
    missing = [c for c in ("open_time", "open", "high", "low", "close", "volume") if c not in bars]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    if "symbol" in bars and len(bars) and not (bars["symbol"] == symbol).all():
        raise ValueError(f"bars hold symbols other than {symbol!r}: one symbol per call")

    times = bars["open_time"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"open_time must be tz-aware (UTC), got dtype {times.dtype}")
    times = times.dt.tz_convert("UTC").dt.as_unit("ns")
    epoch_ns = np.ascontiguousarray(times.array.asi8)
    if len(epoch_ns) > 1 and not (epoch_ns[1:] > epoch_ns[:-1]).all():
        raise ValueError("open_time must be strictly ascending (sorted, no duplicates)")

    arrays = {}
    for col in ("open", "high", "low", "close", "volume"):
        arr = np.ascontiguousarray(bars[col].to_numpy(dtype=np.float64, na_value=np.nan))
        if len(arr):
            lo, hi = arr.min(), arr.max()  # NaN propagates into both and fails the checks
            ok = (lo >= 0.0 if col == "volume" else lo > 0.0) and hi < np.inf
            if not ok:
                what = "finite and >= 0" if col == "volume" else "finite and > 0"
                raise ValueError(f"{col} must be {what} (min {lo}, max {hi})")
        arrays[col] = arr
    return Bars(open_time=times.reset_index(drop=True), epoch_ns=epoch_ns, **arrays)


class Block:
    """A preallocated (n, k) float64 block, Fortran order, with named column views."""

    def __init__(self, n: int, names: Sequence[str]):
        self.names = tuple(names)
        self.values = np.empty((n, len(self.names)), dtype=np.float64, order="F")
        self._index = {name: j for j, name in enumerate(self.names)}
        if len(self._index) != len(self.names):
            raise ValueError("duplicate column names")
        self._written: set[str] = set()

    def __len__(self) -> int:
        return self.values.shape[0]

    def col(self, name: str) -> np.ndarray:
        """The writable, contiguous view of column ``name`` (marks it as written)."""
        self._written.add(name)
        return self.values[:, self._index[name]]

    def put(self, name: str, x: np.ndarray, scale: float | None = None) -> np.ndarray:
        """Column ``name`` = ``x`` (times ``scale``), in one pass."""
        out = self.col(name)
        if scale is None:
            out[:] = x
        else:
            np.multiply(x, scale, out=out)
        return out

    def ratio(self, name: str, num: np.ndarray, den: np.ndarray, minus: float | None = None):
        """Column ``name`` = ``num / den`` (minus ``minus``); ``den`` must never be 0 here.

        Use ``safe_denominator`` first where it can be 0: the result is then NaN, not inf.
        """
        out = self.col(name)
        np.divide(num, den, out=out)
        if minus is not None:
            np.subtract(out, minus, out=out)
        return out

    def lag_diff(self, name: str, x: np.ndarray, lag: int) -> np.ndarray:
        """Column ``name`` = ``x[t] - x[t - lag]``; NaN where ``t - lag`` is before the data."""
        out = self.col(name)
        head = min(lag, len(x))
        out[:head] = NAN
        if lag < len(x):
            np.subtract(x[lag:], x[:-lag], out=out[lag:])
        return out

    def shifted(self, name: str, x: np.ndarray, lag: int) -> np.ndarray:
        """Column ``name`` = ``x[t - lag]``; NaN where ``t - lag`` is before the data."""
        out = self.col(name)
        head = min(lag, len(x))
        out[:head] = NAN
        if lag < len(x):
            out[lag:] = x[: len(x) - lag]
        return out

    def check_complete(self) -> None:
        missing = [n for n in self.names if n not in self._written]
        if missing:
            raise RuntimeError(f"feature columns never written: {missing}")


def safe_denominator(den: np.ndarray) -> np.ndarray:
    """A copy of ``den`` with exact zeros replaced by NaN, so that ratios are NaN, never inf."""
    out = den.astype(np.float64, copy=True)
    out[out == 0.0] = NAN
    return out


def build_frame(open_time: pd.Series, symbol: str, block: Block) -> pd.DataFrame:
    """``open_time``, ``symbol``, then the block's columns (``close`` first), block not copied."""
    frame = pd.DataFrame(block.values, columns=list(block.names), copy=False)
    frame.insert(0, KEY_COLUMNS[0], open_time.array.copy())
    frame.insert(1, KEY_COLUMNS[1], np.full(len(block), symbol, dtype=object))
    return frame



def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum of ``x`` over ``window`` rows (NaN before the first full window).

    Computed from cumulative sums that restart every ``SEGMENT_ROWS`` rows, so a rounding
    residue never outlives its segment and a value does not depend on where the frame
    starts. (A running sum over the whole series, like TA-Lib's SUM, STDDEV and BBANDS,
    carries the residue of every large value it has seen.)
    """
    total, _ = _segment_sums(x, window, anchored=False, squares=False)
    return total


def rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population standard deviation of ``x`` over ``window`` rows.

    Segmented like ``rolling_sum``, with each segment's values taken relative to the
    segment's first input (a row at or before every window in it, so causal): the sums of
    squares then scale with the local spread rather than the price level, and a small
    variance keeps its precision after a volatile stretch. A variance that is zero to
    within rounding (a flat window) comes out as exactly 0.
    """
    mean, var = _segment_sums(x, window, anchored=True, squares=True)
    return mean, np.sqrt(var, out=var)


def _segment_sums(x: np.ndarray, window: int, anchored: bool, squares: bool):
    """(sum, None), or (mean, variance) when ``squares``; NaN before the first window."""
    n = len(x)
    rows = n - window + 1
    if rows <= 0:
        return np.full(n, NAN), np.full(n, NAN)
    seg = SEGMENT_ROWS
    n_seg = -(-rows // seg)
    total = window - 1 + n_seg * seg
    padded = x if total == n else np.concatenate([x, np.full(total - n, x[-1])])
    inputs = sliding_window_view(padded, seg + window - 1)[::seg]  # (n_seg, width), a view
    anchor = inputs[:, :1] if anchored else None
    cum = np.empty((n_seg, seg + window))
    cum[:, 0] = 0.0
    if anchor is not None:
        np.subtract(inputs, anchor, out=cum[:, 1:])
    else:
        cum[:, 1:] = inputs
    cum2 = np.cumsum(np.square(cum), axis=1) if squares else None
    np.cumsum(cum, axis=1, out=cum)
    first = _window_differences(cum, window, total)
    if cum2 is None:
        return first[:n], None
    second = _window_differences(cum2, window, total)
    first *= 1.0 / window  # mean of the (anchored) values
    second *= 1.0 / window  # mean of their squares
    tol = second * (64.0 * _EPS)
    second -= np.square(first)
    second[second <= tol] = 0.0  # zero to within rounding: a flat window
    if anchor is not None:
        first[window - 1 :].reshape(n_seg, seg)[:] += anchor
    return first[:n], second[:n]


def _window_differences(cum: np.ndarray, window: int, total: int) -> np.ndarray:
    out = np.empty(total)
    out[: window - 1] = NAN
    n_seg, seg = cum.shape[0], cum.shape[1] - window
    np.subtract(cum[:, window:], cum[:, :seg], out=out[window - 1 :].reshape(n_seg, seg))
    return out
