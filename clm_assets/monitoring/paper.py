"""Paper trading: the production model of a symbol scored on each new bar by the backtest
engine, from the moment each automatic decision put it in production.

The live record is the walk-forward record (``backtest.walkforward``) left open at its end:
every decided champion trades the bars after its decision until the next one, the last one
up to the newest stored bar, through one engine run, so a day's rows are exactly what the
same engine gives for the whole record (prefix consistency) and switching champions pays
its fees. A symbol without a champion is flat, and its rows say so (``champion = none``):
flat earns nothing and costs nothing, which is a fact, not a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.backtest.walkforward import WalkForward, read_bars, walk_forward
from clm_assets.backtest.window import Costs
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore

DAY = pd.Timedelta(days=1)

NO_CHAMPION = "none"
COLUMNS = (
    "open_time",
    "symbol",
    "champion",
    "family",
    "model_as_of",
    "version",
    "promoted_at",
    "position",
    "turnover",
    "cost",
    "gross_return",
    "return",
    "equity",
)
"""One row per bar: who traded it, what it held from the open, what it paid and earned,
and the record's equity since the first decision (1.0 before it)."""


@dataclass(frozen=True)
class PaperDay:
    symbol: str
    day: pd.Timestamp
    rows: pd.DataFrame
    """``COLUMNS`` for the day's stored bars."""
    pending_position: float | None
    """Target decided at the newest stored bar's close, to be filled at the next open
    (None: not the newest day, or flat without a champion)."""
    record: pd.DataFrame
    """``COLUMNS`` of the whole live record up to the day's last bar (empty: no decision
    had taken effect)."""


def paper_days(
    store: DuckDBStore,
    symbol: str,
    interval: str,
    decisions: pd.DataFrame,
    as_of_end: dict[pd.Timestamp, pd.Timestamp],
    first_day: pd.Timestamp,
    last_day: pd.Timestamp,
    *,
    context: pd.Timedelta,
    costs: Costs,
) -> list[PaperDay]:
    """The paper record of ``symbol`` on each UTC day of ``[first_day, last_day]``.

    ``decisions`` are its automatic decisions (``registry.promotion.history`` rows),
    ``as_of_end`` the time each took effect. One engine run covers the record through the
    last day's newest stored bar; each day is a slice of it, which by the engine's prefix
    consistency equals a run that stops at that day.
    """
    bar = interval_delta(interval)
    bars = read_bars(store, symbol, first_day, last_day + DAY)
    days = pd.date_range(first_day, last_day, freq="D")
    stored = {d: g for d, g in bars.groupby(bars["open_time"].dt.floor("D"))}
    missing = [d for d in days if d not in stored]
    if missing:
        raise PaperError(
            f"{symbol}: no stored bar on {missing[0]:%Y-%m-%d}; materialize raw_ohlcv first"
        )
    until = min(bars["open_time"].iloc[-1], _newest_features(store, symbol, last_day + DAY)) + bar
    ends = {pd.Timestamp(a): as_of_end[pd.Timestamp(a)] for a in decisions["as_of"]}
    effective = decisions[[ends[pd.Timestamp(a)] < until for a in decisions["as_of"]]]
    if effective.empty:
        empty = _flat(symbol, bars.iloc[:0])
        return [PaperDay(symbol, d, _flat(symbol, stored[d]), None, empty) for d in days]
    record = walk_forward(
        store,
        symbol,
        interval,
        effective,
        ends,
        context=context,
        fee_bps=costs.fee_bps,
        slippage_bps=costs.slippage_bps,
        long_only=costs.long_only,
        until=until,
    )
    frame = attributed(record)
    first_result = record.result.open_time[0]
    out = []
    for d in days:
        day_bars = stored[d]
        traded = frame[(frame["open_time"] >= d) & (frame["open_time"] < d + DAY)]
        before = day_bars[day_bars["open_time"] < first_result]  # no decision in force yet
        parts = [p for p in (_flat(symbol, before), traded) if len(p)]
        rows = pd.concat(parts, ignore_index=True)
        last = rows["open_time"].iloc[-1]
        newest = d == days[-1] and rows["champion"].iloc[-1] != NO_CHAMPION
        pending = float(record.result.pending_position) if newest else None
        out.append(PaperDay(symbol, d, rows, pending, frame[frame["open_time"] <= last]))
    return out


def attributed(record: WalkForward) -> pd.DataFrame:
    """Every result bar of ``record`` as ``COLUMNS``, with the champion that traded it."""
    frame = record.result.to_frame()
    frame.insert(1, "symbol", record.symbol)
    frame = frame.assign(**_unattributed(len(frame)))
    for seg in record.segments:
        # a result bar holds the target decided at the previous close
        inside = (frame["open_time"] > seg.start) & (frame["open_time"] <= seg.end)
        frame.loc[inside, "champion"] = seg.champion
        frame.loc[inside, "promoted_at"] = seg.start
        if seg.model is not None:
            frame.loc[inside, "family"] = seg.model.family
            frame.loc[inside, "model_as_of"] = seg.model.as_of
            frame.loc[inside, "version"] = seg.model.version
    return frame[list(COLUMNS)]


def _newest_features(store: DuckDBStore, symbol: str, before: pd.Timestamp) -> pd.Timestamp:
    """The models trade on features: the record ends at the newest bar that has them
    (a bar stored by a run still computing its features is not traded yet)."""
    found = store.query(
        "SELECT max(open_time) AS t FROM features.features WHERE symbol = ? AND open_time < ?",
        [symbol, before.tz_convert(None).to_pydatetime()],
    )["t"].iloc[0]
    if pd.isna(found):
        raise PaperError(f"{symbol}: no features stored before {before}")
    found = pd.Timestamp(found)
    return found if found.tz is not None else found.tz_localize("UTC")


def _unattributed(n: int) -> dict[str, pd.Series]:
    """Champion columns of ``n`` bars that no model traded, typed so a flat day stores."""
    times = pd.Series([pd.NaT] * n, dtype="datetime64[ns, UTC]")
    text = pd.Series([None] * n, dtype="string")
    return {
        "champion": pd.Series([NO_CHAMPION] * n, dtype="string"),
        "family": text,
        "model_as_of": times,
        "version": text.copy(),
        "promoted_at": times.copy(),
    }


class PaperError(RuntimeError):
    """The paper record cannot be computed from what is stored."""


def _flat(symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    """Bars before any decision took effect: flat, no champion."""
    n = len(bars)
    zeros = np.zeros(n)
    return pd.DataFrame(
        {
            "open_time": bars["open_time"].to_numpy(),
            "symbol": symbol,
            **_unattributed(n),
            "position": zeros,
            "turnover": zeros,
            "cost": zeros,
            "gross_return": zeros,
            "return": zeros,
            "equity": np.ones(n),
        }
    )[list(COLUMNS)]
