"""Vectorized next-open backtest of target positions.

Timing
------
``position[t]`` is the target decided at the close of bar ``t`` (a fraction of equity in
[-1, 1]: the model's score mapped to a size). It is filled at the open of bar ``t + 1``.
Nothing is held before the first fill, so the strategy's first bar is bar 1 and a run over
``n`` input bars yields ``m = n - 1`` result bars (bars ``1 … n - 1``). The target decided at
the last close has no fill yet; it is returned as ``pending_position``.

Per-bar accounting (bar ``k = 1 … n - 1``)
------------------------------------------
With ``w`` the (long-only clipped) targets, ``held[k] = w[k - 1]`` the position held from
the open of bar ``k`` to its close and ``prev = held[k - 1]`` (``held[0] = 0``)::

    g = open[k] / close[k - 1] - 1                 # gap: previous close -> this open
    r = close[k] / open[k] - 1                     # this open -> this close
    c = (fee_bps + slippage_bps) / 10_000          # cost rate per unit of notional traded

    gap_factor   = 1 + prev * g                    # previous position marked to the open
    close_factor = 1 - c * closed                  # exit order (bought/sold back)
    open_factor  = 1 - c * opened                  # entry order
    hold_factor  = 1 + held[k] * r                 # new position marked to the close

    gross[k] = gap_factor * hold_factor - 1
    cost[k]  = 1 - close_factor * open_factor
    net[k]   = gap_factor * close_factor * open_factor * hold_factor - 1
             # so (1 + net) = (1 + gross) * (1 - cost) exactly
    equity[k] = prod_{i <= k} (1 + net[i])         # compounded from 1.0 before bar 1

``closed``/``opened`` split the fill ``|held[k] - prev|``: moving within one side (or from
or to flat) is one order, ``closed = max(|prev| - |held|, 0)``, ``opened = max(|held| -
|prev|, 0)``, so ``cost = c * |held - prev|``; a sign flip is two orders, first
``closed = |prev|`` then ``opened = |held|``, each charged on the equity at that moment, so
``cost = c * |Δ| - c² * |prev| * |held|``. Costs are fractions of the equity at the open.
The close-to-close return of bar ``k`` is thus the gap at the old position, the fill, then
the open-to-close move at the new position, compounded; positions are fractions of equity
re-marked at each open and close (a position of 1 held throughout earns exactly
``close[k] / close[k - 1] - 1``; a short or fractional position is a constant fraction of
equity over each segment, not a fixed number of units, and that re-marking is not charged).

Trades
------
A trade is a maximal run of result bars whose held position is non-zero with one sign
(resizing within a side stays in the trade; a flip ends one trade and starts the next).
Its return compounds every factor that belongs to it: its entry order, each bar's
open-to-close move and the gaps between its bars, resizing orders, and, once closed, the
gap into the exit bar and the exit order. ``entry_time`` is the open time of the first bar
held (the entry fill), ``exit_time`` the open time of the bar whose open filled the exit.
A trade still held at the last bar is ``is_open`` (``exit_time`` NaT), marked to the last
close. Flat bars have every factor equal to 1, so ``equity[-1]`` equals the product of
``1 + return`` over all trades.

Prefix consistency
------------------
Every per-bar value depends only on bars up to its own, so a run on ``bars[:j]`` equals
the first ``j - 1`` bars of a run on ``bars`` element for element (bit for bit), and its
closed trades are the full run's first trades; only its last trade may be open there and
closed later. This is what lets a live model be scored bar by bar with the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time",
    "exit_time",
    "side",
    "bars",
    "return",
    "is_open",
)


class BacktestError(ValueError):
    """The inputs cannot be backtested as given (never patched over with a guess)."""


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Per-bar results for bars ``1 … n - 1`` of the input, plus the inputs they came from.

    Per-bar arrays all have length ``n_bars = n - 1`` and align with ``open_time``.
    """

    open_time: pd.DatetimeIndex
    """Open time of each result bar (bars 1 … n - 1 of the input)."""
    position: np.ndarray
    """Position held from the bar's open to its close (after long-only clipping)."""
    gross_returns: np.ndarray
    costs: np.ndarray
    """Cost of the bar's fill as a fraction of the equity at its open."""
    returns: np.ndarray
    """Net per-bar returns: ``(1 + gross) * (1 - cost) - 1``."""
    equity: np.ndarray
    """Equity after each bar, compounded from 1.0."""
    turnover: np.ndarray
    """``|position[k] - position[k - 1]|`` (position before bar 1 is 0)."""
    trades: pd.DataFrame
    """One row per trade, columns ``TRADE_COLUMNS``."""
    pending_position: float
    """Target decided at the last input close, to be filled at the next (unseen) open."""
    fee_bps: float
    slippage_bps: float
    long_only: bool
    bar_open_time: pd.DatetimeIndex
    """The input bars (all ``n``), kept so baselines can be run on exactly the same bars."""
    bar_open: np.ndarray
    bar_close: np.ndarray

    @property
    def n_bars(self) -> int:
        return len(self.returns)

    def to_frame(self) -> pd.DataFrame:
        """The per-bar arrays as columns, one row per result bar."""
        return pd.DataFrame(
            {
                "open_time": self.open_time,
                "position": self.position,
                "gross_return": self.gross_returns,
                "cost": self.costs,
                "return": self.returns,
                "equity": self.equity,
                "turnover": self.turnover,
            }
        )


def _as_float_array(name: str, values: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise BacktestError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise BacktestError(f"{name} has {len(arr)} values, open_time has {n}")
    return arr


def _first_bad(mask: np.ndarray, open_time: pd.DatetimeIndex) -> str:
    i = int(np.flatnonzero(mask)[0])
    return f"{int(mask.sum())} bars, first at index {i} ({open_time[i]})"


def run_backtest(
    open_time: Any,
    open_: Any,
    close: Any,
    position: Any,
    *,
    fee_bps: float = 10.0,
    slippage_bps: float = 0.0,
    long_only: bool = False,
) -> BacktestResult:
    """Backtest target positions with next-open fills; see the module docstring.

    Args:
        open_time: bar open times, strictly increasing (anything ``pd.DatetimeIndex``
            accepts: a datetime64 array, a ``Series`` of tz-aware timestamps, …).
        open_, close: bar open and close prices, finite and > 0, same length.
        position: target position decided at each bar's close, finite, in [-1, 1]. A NaN
            (e.g. a model row without enough history) is an error, never read as flat:
            trim or fill it explicitly before calling.
        fee_bps, slippage_bps: cost per unit of notional traded, in basis points, >= 0.
        long_only: clip targets to [0, 1] (shorts become flat).

    A bars frame and a predictions frame aligned on ``open_time`` are passed as
    ``run_backtest(bars.open_time, bars.open, bars.close, preds.position)``.
    Needs at least 2 bars (the first fill happens at the open of the second).
    """
    index = pd.DatetimeIndex(open_time)
    n = len(index)
    if n < 2:
        raise BacktestError(f"a backtest needs at least 2 bars, got {n}")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise BacktestError("open_time must be strictly increasing")
    o = _as_float_array("open", open_, n)
    cl = _as_float_array("close", close, n)
    w = _as_float_array("position", position, n)
    for name, prices in (("open", o), ("close", cl)):
        bad = ~(np.isfinite(prices) & (prices > 0))
        if bad.any():
            raise BacktestError(f"{name} must be finite and > 0: {_first_bad(bad, index)}")
    bad = ~np.isfinite(w)
    if bad.any():
        raise BacktestError(f"position is NaN/inf (not read as flat): {_first_bad(bad, index)}")
    bad = np.abs(w) > 1.0
    if bad.any():
        raise BacktestError(f"position outside [-1, 1]: {_first_bad(bad, index)}")
    if not (np.isfinite(fee_bps) and fee_bps >= 0):
        raise BacktestError(f"fee_bps must be finite and >= 0, got {fee_bps}")
    if not (np.isfinite(slippage_bps) and slippage_bps >= 0):
        raise BacktestError(f"slippage_bps must be finite and >= 0, got {slippage_bps}")
    if long_only:
        w = np.clip(w, 0.0, 1.0)
    c = (float(fee_bps) + float(slippage_bps)) / 10_000.0

    # s[j] is the position before result bar j, s[j + 1] the position during it.
    # (In-place arithmetic: at 1M bars each fresh temporary costs about as much as the op.)
    s = np.empty(n)
    s[0] = 0.0
    s[1:] = w[:-1]
    prev, held = s[:-1], s[1:]
    abs_s = np.abs(s)
    abs_prev, abs_held = abs_s[:-1], abs_s[1:]
    sign = np.sign(s)
    flip = sign[:-1] != sign[1:]
    flip &= sign[:-1] != 0
    flip &= sign[1:] != 0

    # closed = max(|prev| - |held|, 0), opened = max(|held| - |prev|, 0); a flip closes
    # all of |prev| and opens all of |held|.
    delta = np.subtract(abs_held, abs_prev)
    turnover = np.abs(np.subtract(held, prev))
    opened = np.maximum(delta, 0.0)
    closed = np.negative(delta, out=delta)
    np.maximum(closed, 0.0, out=closed)
    np.copyto(closed, abs_prev, where=flip)
    np.copyto(opened, abs_held, where=flip)

    gap_factor = np.divide(o[1:], cl[:-1])
    gap_factor -= 1.0
    gap_factor *= prev
    gap_factor += 1.0
    hold_factor = np.divide(cl[1:], o[1:])
    hold_factor -= 1.0
    hold_factor *= held
    hold_factor += 1.0
    close_factor = closed  # reused in place: 1 - c * closed
    close_factor *= -c
    close_factor += 1.0
    open_factor = opened
    open_factor *= -c
    open_factor += 1.0

    # a: factors that belong to the position held before the fill; b: to the new one.
    a = np.multiply(gap_factor, close_factor)
    b = np.multiply(open_factor, hold_factor)
    growth = np.multiply(a, b)
    gross = np.multiply(gap_factor, hold_factor, out=gap_factor)
    gross -= 1.0
    costs = np.multiply(close_factor, open_factor, out=close_factor)
    np.subtract(1.0, costs, out=costs)
    equity = np.cumprod(growth)
    returns = np.subtract(growth, 1.0, out=growth)

    out_time = index[1:]
    trades = _trades(sign, a, b, out_time)
    return BacktestResult(
        open_time=out_time,
        position=held,
        gross_returns=gross,
        costs=costs,
        returns=returns,
        equity=equity,
        turnover=turnover,
        trades=trades,
        pending_position=float(w[-1]),
        fee_bps=float(fee_bps),
        slippage_bps=float(slippage_bps),
        long_only=bool(long_only),
        bar_open_time=index,
        bar_open=o,
        bar_close=cl,
    )


def _trades(sign: np.ndarray, a: np.ndarray, b: np.ndarray, out_time: pd.DatetimeIndex):
    """Trade list from the sign of the position path ``s`` (length m + 1: the position
    before result bar 0, then the position held in each result bar) and the per-bar
    factor halves.

    The factors are interleaved as ``a_0, b_0, a_1, b_1, …`` and labelled with the trade
    holding the position they belong to (``s[j]`` for ``a_j``, ``s[j + 1]`` for ``b_j``);
    trades are contiguous runs in that sequence, so one ``multiply.reduceat`` compounds
    each of them.
    """
    m = len(a)
    run = np.concatenate(([0], np.cumsum(sign[1:] != sign[:-1])))
    tid = np.where(sign != 0, run, -1)
    labels = np.empty(2 * m, dtype=np.int64)
    labels[0::2] = tid[:-1]
    labels[1::2] = tid[1:]
    factors = np.empty(2 * m)
    factors[0::2] = a
    factors[1::2] = b

    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    ends = np.append(starts[1:] - 1, 2 * m - 1)
    products = np.multiply.reduceat(factors, starts)
    keep = labels[starts] >= 0
    starts, ends, products = starts[keep], ends[keep], products[keep]

    # A trade's first factor is the b of its entry bar (odd index); it ends on the a of
    # its exit bar (even index) or, still open, on the last b.
    entry_bar = (starts - 1) // 2
    is_open = ends % 2 == 1
    exit_bar = np.where(is_open, m, ends // 2)
    exit_time = out_time[np.minimum(exit_bar, m - 1)].where(~is_open)
    return pd.DataFrame(
        {
            "entry_time": out_time[entry_bar],
            "exit_time": exit_time,
            "side": sign[entry_bar + 1].astype(np.int8),
            "bars": (exit_bar - entry_bar).astype(np.int64),
            "return": products - 1.0,
            "is_open": is_open,
        },
        columns=list(TRADE_COLUMNS),
    )
