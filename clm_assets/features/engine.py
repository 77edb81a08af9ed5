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
SEGMENT_ROWS = 32
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
    open_time: pd.arrays.DatetimeArray
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

    times = bars["open_time"].array
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"open_time must be tz-aware (UTC), got dtype {times.dtype}")
    if str(times.tz) != "UTC":
        times = times.tz_convert("UTC")
    if times.unit != "ns":
        times = times.as_unit("ns")
    epoch_ns = times.asi8
    if len(epoch_ns) > 1 and not (epoch_ns[1:] > epoch_ns[:-1]).all():
        raise ValueError("open_time must be strictly ascending (sorted, no duplicates)")

    arrays = {}
    for col in ("open", "high", "low", "close", "volume"):
        series = bars[col]
        if series.dtype == np.float64:
            arr = np.ascontiguousarray(series.to_numpy())  # a view, no copy
        else:  # ints, nullable floats: nulls become NaN and fail the checks below
            arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        if len(arr):
            lo, hi = arr.min(), arr.max()  # NaN propagates into both and fails the checks
            ok = (lo >= 0.0 if col == "volume" else lo > 0.0) and hi < np.inf
            if not ok:
                what = "finite and >= 0" if col == "volume" else "finite and > 0"
                raise ValueError(f"{col} must be {what} (min {lo}, max {hi})")
        arrays[col] = arr
    return Bars(open_time=times, epoch_ns=epoch_ns, **arrays)


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

    def put_all(self, names: Sequence[str], arrays: Sequence[np.ndarray], scale: float) -> None:
        """``put`` for each output of a multi-output TA-Lib function (freed on return)."""
        for name, x in zip(names, arrays, strict=True):
            self.put(name, x, scale)

    def ratio_all(self, names: Sequence[str], arrays: Sequence[np.ndarray], den: np.ndarray):
        """``ratio`` for each output of a multi-output TA-Lib function (freed on return)."""
        for name, x in zip(names, arrays, strict=True):
            self.ratio(name, x, den)

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


def safe_denominator(den: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``den`` with exact zeros replaced by NaN (in ``out``, a copy by default): ratios over
    it are NaN where undefined, never inf."""
    if out is None:
        out = den.astype(np.float64, copy=True)
    elif out is not den:
        out[:] = den
    out[out == 0.0] = NAN
    return out


def build_frame(open_time: pd.arrays.DatetimeArray, symbol: str, block: Block) -> pd.DataFrame:
    """``open_time``, ``symbol``, then the block's columns (``close`` first), block not copied."""
    frame = pd.DataFrame(block.values, columns=list(block.names), copy=False)
    frame.insert(0, KEY_COLUMNS[0], open_time.copy())
    symbols = np.empty(len(block), dtype=object)
    symbols.fill(symbol)  # one shared str (np.full would build a new str per row)
    frame.insert(1, KEY_COLUMNS[1], symbols)
    return frame


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum of ``x`` over ``window`` rows (NaN before the first full window).

    Computed from cumulative sums that restart every ``SEGMENT_ROWS`` rows, so a rounding
    residue never outlives its segment and a value does not depend on where the frame
    starts. (A running sum over the whole series, like TA-Lib's SUM, STDDEV and BBANDS,
    carries the residue of every large value it has seen.)
    """
    total = np.empty(len(x))
    _segment_stats(x, window, total, None)
    return total


def rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population standard deviation of ``x`` over ``window`` rows.

    Segmented like ``rolling_sum``, with each segment's values taken relative to the value
    at its first output row (at or before every window end in the segment, so causal):
    the sums of squares then scale with the local spread rather than the price level, and
    a small variance keeps its precision after a volatile stretch. A variance that is zero
    to within rounding (a flat window) comes out as exactly 0.
    """
    mean, std = np.empty(len(x)), np.empty(len(x))
    _segment_stats(x, window, mean, std)
    return mean, np.sqrt(std, out=std)


_CHUNK_ROWS = 1 << 16  # output rows per pass: temporaries small enough to stay in cache


def _segment_stats(x: np.ndarray, window: int, first: np.ndarray, second: np.ndarray | None):
    """Window sums of ``x`` into ``first``; or, with ``second``, anchored window means into
    ``first`` and variances into ``second``. NaN before the first full window."""
    n = len(x)
    head = min(window - 1, n)
    first[:head] = NAN
    if second is not None:
        second[:head] = NAN
    rows = n - window + 1
    step = _CHUNK_ROWS - _CHUNK_ROWS % SEGMENT_ROWS
    for start in range(0, max(rows, 0), step):
        m = min(step, rows - start)
        dest = slice(window - 1 + start, window - 1 + start + m)
        stats = _chunk_stats(x[start : start + m + window - 1], window, second is not None)
        for out, values in zip((first, second), stats, strict=False):
            if m == values.size:
                out[dest].reshape(values.shape)[:] = values
            else:
                out[dest] = values.reshape(-1)[:m]


def _chunk_stats(x: np.ndarray, window: int, squares: bool) -> tuple[np.ndarray, ...]:
    """Window statistics of every window of ``x``, shape (n_seg, SEGMENT_ROWS): row s is
    segment s, i.e. the windows ending at rows ``window - 1 + s * SEGMENT_ROWS + j``."""
    seg = SEGMENT_ROWS
    rows = len(x) - window + 1
    n_seg = -(-rows // seg)
    need = n_seg * seg + window - 1
    if need > len(x):  # pad the last segment; padded windows are never read back
        x = np.concatenate([x, np.full(need - len(x), x[-1])])
    inputs = sliding_window_view(x, seg + window - 1)[::seg]  # (n_seg, width), a view
    # cum[0]: the values, cum[1]: their squares; column 0 is the empty prefix
    cum = np.empty((2 if squares else 1, n_seg, seg + window))
    cum[:, :, 0] = 0.0
    if not squares:
        cum[0, :, 1:] = inputs
        _cumsum_columns(cum)
        return (np.subtract(cum[0, :, window:], cum[0, :, :seg]),)
    anchor = x[window - 1 :: seg][:n_seg, None]  # x at each segment's first output row
    np.subtract(inputs, anchor, out=cum[0, :, 1:])
    np.square(cum[0, :, 1:], out=cum[1, :, 1:])
    _cumsum_columns(cum)
    sums = np.subtract(cum[:, :, window:], cum[:, :, :seg])
    sums *= 1.0 / window
    mean, var = sums  # mean of the anchored values, mean of their squares
    tol = var * (64.0 * _EPS)
    var -= np.square(mean)
    var[var <= tol] = 0.0  # zero to within rounding: a flat window
    mean += anchor
    return mean, var


def _cumsum_columns(a: np.ndarray) -> None:
    """In-place cumulative sum along the last axis, one whole column at a time (numpy's
    own ``cumsum`` along a short axis runs element by element)."""
    for k in range(1, a.shape[-1]):
        np.add(a[..., k - 1], a[..., k], out=a[..., k])
