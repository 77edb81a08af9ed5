"""A family's out-of-sample record: what its retraining procedure earned on bars none of
its models had seen, stitched over a lookback window.

For family F, symbol S and a decision whose as-of ends at E, each bar t of the lookback
window ``[E - lookback, E)`` is traded by the model of the EARLIEST as-of whose stored
evaluation covers t: that model's training ended an embargo before its evaluation window,
so t is out of sample for it, and the earliest one is the model that first traded t in
production order. Bars no stored evaluation covers (a gap in the as-ofs) are held flat.
The held positions run once through ``run_backtest`` on the raw bars with the deployment
costs, so switching from one model to the next pays its fees like any position change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clm_assets.backtest.engine import run_backtest
from clm_assets.backtest.metrics import max_drawdown_of, per_bar_sharpe
from clm_assets.backtest.window import Costs


class RecordError(RuntimeError):
    """A record cannot be stitched from what is stored."""


@dataclass(frozen=True)
class StoredEvaluation:
    """One as-of's stored evaluation of the family: the held position of each bar."""

    as_of: pd.Timestamp
    version: str
    held: pd.DataFrame
    """``open_time`` and ``position`` (held from that bar's open), as the evaluation stored."""


@dataclass(frozen=True)
class Segment:
    """The bars of the record one model traded."""

    as_of: pd.Timestamp
    version: str
    first_bar: pd.Timestamp
    last_bar: pd.Timestamp
    bars: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "version": self.version,
            "first_bar": self.first_bar.isoformat(),
            "last_bar": self.last_bar.isoformat(),
            "bars": self.bars,
        }


@dataclass(frozen=True, eq=False)
class FamilyRecord:
    """The stitched record of one family at one decision, with what it was made of."""

    family: str
    symbol: str
    as_of: pd.Timestamp
    """The decision's as-of."""
    version: str
    """The version of the family's model of that as-of: the one promoted if it wins."""
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    open_time: pd.DatetimeIndex
    returns: np.ndarray
    """Net per-bar returns of the record (first model-traded bar to the last)."""
    trade_count: int
    covered_bars: int
    """Bars a model traded (the rest, gaps between evaluations, were held flat)."""
    segments: tuple[Segment, ...]
    bars_per_day: float

    @property
    def days(self) -> float:
        """Days of model-traded bars: what ``min_record_days`` is compared with."""
        return self.covered_bars / self.bars_per_day

    def summary(self) -> dict[str, Any]:
        """What the decision records about the record (JSON-able)."""
        n = len(self.returns)
        sharpe = per_bar_sharpe(self.returns)
        return {
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "bars": n,
            "covered_bars": self.covered_bars,
            "days": self.days,
            "first_bar": self.open_time[0].isoformat() if n else None,
            "last_bar": self.open_time[-1].isoformat() if n else None,
            "per_bar_sharpe": sharpe,
            "sharpe": None if sharpe is None else sharpe * np.sqrt(self.bars_per_day * 365),
            "total_return": float(np.prod(1.0 + self.returns) - 1.0) if n else None,
            "max_drawdown": max_drawdown_of(self.returns),
            "trade_count": self.trade_count,
            "as_ofs": [s.as_of.isoformat() for s in self.segments],
            "versions": [s.version for s in self.segments],
            "segments": [s.as_dict() for s in self.segments],
        }


def stitch_record(
    family: str,
    symbol: str,
    as_of: pd.Timestamp,
    version: str,
    evaluations: Sequence[StoredEvaluation],
    bars: pd.DataFrame,
    window: tuple[pd.Timestamp, pd.Timestamp],
    costs: Costs,
    bar: pd.Timedelta,
) -> FamilyRecord:
    """Stitch ``evaluations`` (any order) over ``window`` and backtest the held positions
    on ``bars`` (``open_time``, ``open``, ``close``; they must include the bar before the
    first model-traded bar, whose close the first fill follows)."""
    start, end = window
    ordered = sorted(evaluations, key=lambda e: e.as_of)
    late = [e.as_of for e in ordered if e.as_of > as_of]
    if late:
        raise RecordError(f"{family} evaluation of as-of {late[0]} is after {as_of}")
    per_day = pd.Timedelta(days=1) / bar
    frames = [
        ev.held.assign(owner=i)[["open_time", "position", "owner"]]
        for i, ev in enumerate(ordered)
        if len(ev.held)
    ]
    held = pd.concat(frames, ignore_index=True) if frames else None
    if held is not None:
        held = held[(held["open_time"] >= start) & (held["open_time"] < end)]
        # each bar to the earliest as-of that stored it (frames are in as-of order)
        held = held.drop_duplicates("open_time", keep="first").set_index("open_time")
    if held is None or held.empty:
        empty = pd.DatetimeIndex([], tz="UTC")
        return FamilyRecord(
            family, symbol, as_of, version, start, end, empty, np.zeros(0), 0, 0, (), per_day
        )
    first, last = held.index.min(), held.index.max()
    span = bars[(bars["open_time"] >= first - bar) & (bars["open_time"] <= last)]
    span = span.reset_index(drop=True)
    if len(span) < 2 or span["open_time"].iloc[0] != first - bar:
        raise RecordError(
            f"{family} {symbol}: raw bars needed from {first - bar} (the close the record's "
            f"first fill follows) to {last}; they start at "
            f"{span['open_time'].iloc[0] if len(span) else 'nothing'}"
        )
    times = pd.DatetimeIndex(span["open_time"])
    absent = held.index.difference(times)
    if len(absent):
        raise RecordError(
            f"{family} {symbol}: {len(absent)} bars of the stored evaluations have no raw bar "
            f"(first {absent[0]}): re-materialize market_data/raw_ohlcv for them"
        )
    cells = held.reindex(times[1:])
    positions = cells["position"].fillna(0.0).to_numpy(np.float64)
    # run_backtest fills the target of bar k at the open of bar k + 1: held[k] = target[k-1]
    target = np.append(positions, 0.0)
    result = run_backtest(
        times,
        span["open"],
        span["close"],
        target,
        fee_bps=costs.fee_bps,
        slippage_bps=costs.slippage_bps,
        long_only=costs.long_only,
    )
    return FamilyRecord(
        family=family,
        symbol=symbol,
        as_of=as_of,
        version=version,
        window_start=start,
        window_end=end,
        open_time=result.open_time,
        returns=result.returns,
        trade_count=len(result.trades),
        covered_bars=len(held),
        segments=_segments(ordered, held),
        bars_per_day=per_day,
    )


def _segments(ordered: Sequence[StoredEvaluation], held: pd.DataFrame) -> tuple[Segment, ...]:
    out = []
    for i, bars in held.groupby("owner", sort=True):
        ev = ordered[int(i)]
        out.append(Segment(ev.as_of, ev.version, bars.index.min(), bars.index.max(), len(bars)))
    return tuple(out)
