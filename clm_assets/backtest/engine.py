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
The account holds units of the asset and cash. At each open it trades to the target: the
units whose notional is ``held[k] = w[k - 1]`` (the long-only clipped target) times the
equity left after paying for that order, at a cost of ``c = (fee_bps + slippage_bps) /
10_000`` per unit of notional traded (``c * |Δunits| * open``). Between fills it holds
units, not a fraction: a short or a fractional long drifts away from its target as prices
move, and trading it back at the next open is an order like any other, charged the same.
A position of 1 does not drift (its notional is the equity), so a full long held
throughout earns exactly ``close[k] / close[k - 1] - 1`` after its entry.

With ``prev = held[k - 1]`` (``held[0] = 0``), all fractions of the equity::

    R = close[k - 1] / open[k - 1]; G = open[k] / close[k - 1]; r = close[k] / open[k]
    f = prev * R / (1 + prev * (R - 1))           # prev's fraction at the previous close
    gap_factor = 1 + f * (G - 1)                  # previous close -> this open
    d = f * G / gap_factor                        # drifted fraction at this open
    turnover = |held - d| / (1 + c * sign(held - d) * held)   # notional traded
    cost  = c * turnover                          # paid out of the equity at the open
    hold_factor = 1 + held * r                    # new holding marked to the close

    gross[k] = gap_factor * hold_factor - 1
    net[k]   = gap_factor * (1 - cost) * hold_factor - 1
             # so (1 + net) = (1 + gross) * (1 - cost) exactly
    equity[k] = prod_{i <= k} (1 + net[i])        # compounded from 1.0 before bar 1

``turnover`` solves ``traded = |held * (1 - c * traded) - d|``: the target is a fraction of
the equity after the order, so entering a long of 1 buys ``1 / (1 + c)`` of the equity at
the open. A sign flip is one order through zero; it is accounted as selling ``|d|``
(factor ``1 - c * |d|``, which closes the trade) then opening ``|held|`` of what is left
(factor ``1 / (1 + c * |held|)``), which is the same cost. A short whose price more than
doubles within a holding period leaves no equity: that is an error, not a number.
(Before issue 7 the fraction was re-marked to its target at every open and close for free,
and entries paid ``c`` on the pre-cost equity.)

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
    """Target fraction of equity held from the bar's open fill (after long-only clipping);
    the holding drifts from it until the next open."""
    gross_returns: np.ndarray
    costs: np.ndarray
    """Cost of the bar's fill as a fraction of the equity at its open."""
    returns: np.ndarray
    """Net per-bar returns: ``(1 + gross) * (1 - cost) - 1``."""
    equity: np.ndarray
    """Equity after each bar, compounded from 1.0."""
    turnover: np.ndarray
    """Notional traded at the bar's open as a fraction of the equity at that open: the
    change of target plus the rebalancing of the drift (``cost = c * turnover``)."""
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
    if not fee_bps + slippage_bps < 10_000.0:
        raise BacktestError(
            f"fee_bps + slippage_bps must be < 10000 (a cost under 100 % of the notional), "
            f"got {fee_bps + slippage_bps}"
        )
    if long_only:
        w = np.clip(w, 0.0, 1.0)
    c = (float(fee_bps) + float(slippage_bps)) / 10_000.0

    # s[i] is the target held during input bar i (s[0] = 0: nothing before the first fill);
    # result bar j is input bar j + 1 and holds held[j] = s[j + 1].
    # (In-place arithmetic: at 1M bars each fresh temporary costs about as much as the op.)
    s = np.empty(n)
    s[0] = 0.0
    s[1:] = w[:-1]
    held = s[1:]

    # Each input bar's holding from its fill at the open to the close: equity growth
    # ``hold`` and the holding's notional over the equity at the fill, ``value``.
    value = np.divide(cl, o)
    hold = np.subtract(value, 1.0)
    hold *= s
    hold += 1.0
    value *= s
    _require_solvent(hold, index, "close")
    # Drift: the fraction of equity at the previous close, carried through the gap.
    frac = np.divide(value[:-1], hold[:-1])  # fraction at the close before each result bar
    gap_move = np.divide(o[1:], cl[:-1])
    gap_factor = np.subtract(gap_move, 1.0)
    gap_factor *= frac
    gap_factor += 1.0
    _require_solvent(np.concatenate(([1.0], gap_factor)), index, "open")
    drifted = np.multiply(frac, gap_move, out=frac)  # fraction at the open, before the fill
    drifted /= gap_factor
    hold_factor = hold[1:]

    # The order from `drifted` to `held`, its cost paid out of the equity it leaves:
    # turnover = |held - drifted| / (1 + c * sign(held - drifted) * held).
    step = np.subtract(held, drifted)
    turnover = np.multiply(np.sign(step), held)
    turnover *= c
    turnover += 1.0
    np.divide(np.abs(step, out=step), turnover, out=turnover)
    # Split into the part of the fill that belongs to the trade being closed (exit or
    # flip: selling |drifted|) and the rest (the new trade's entry, or a resize).
    sign = np.sign(s)
    flip = sign[:-1] != sign[1:]
    flip &= sign[:-1] != 0
    exit_ = flip.copy()
    flip &= sign[1:] != 0
    close_factor = np.abs(drifted)
    close_factor *= -c
    close_factor += 1.0
    np.copyto(close_factor, 1.0, where=~exit_)
    open_factor = np.multiply(turnover, -c)
    open_factor += 1.0
    entry_after_flip = np.abs(held)
    entry_after_flip *= c
    entry_after_flip += 1.0
    np.divide(1.0, entry_after_flip, out=entry_after_flip)
    np.copyto(open_factor, entry_after_flip, where=flip)
    np.copyto(open_factor, 1.0, where=exit_ & ~flip)

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


def _require_solvent(factors: np.ndarray, index: pd.DatetimeIndex, when: str) -> None:
    """A short through a price that more than doubles (or a long through a price of zero)
    leaves no equity to hold a fraction of: there is no honest number after that."""
    bad = factors <= 0.0
    if bad.any():
        raise BacktestError(
            f"the position lost all the equity by the {when}: {_first_bad(bad, index)}"
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
