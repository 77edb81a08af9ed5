"""The system's out-of-sample record: each promoted champion traded from the moment it was
chosen until the next decision, stitched into one backtest, next to buy-and-hold.

A champion chosen at the end of as-of ``A_i`` trades the bars of ``[end(A_i), end(A_i+1))``
— bars no decision up to ``A_i`` had seen. While a symbol has no champion the system is
flat: no model, no position. The stitched positions run through the same engine once, so
switching champions pays its fees like any other position change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.backtest.metrics import buy_and_hold, metrics_table
from clm_assets.features.schema import KEY_COLUMNS
from clm_assets.models.artifact import ModelArtifact
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice
from clm_assets.storage.models import read_model


class WalkForwardError(RuntimeError):
    """The record cannot be stitched from what is stored."""


@dataclass
class Segment:
    start: pd.Timestamp
    end: pd.Timestamp
    champion: str
    """``family@as-of (version)`` or ``none`` (flat)."""
    model: ModelArtifact | None = None
    """The champion traded (None: flat)."""


@dataclass
class WalkForward:
    symbol: str
    segments: list[Segment]
    result: BacktestResult
    benchmark: BacktestResult
    metrics: dict[str, float | None]


def walk_forward(
    store: DuckDBStore,
    symbol: str,
    interval: str,
    decisions: pd.DataFrame,
    as_of_end: dict[pd.Timestamp, pd.Timestamp],
    *,
    context: pd.Timedelta,
    fee_bps: float = 10.0,
    slippage_bps: float = 0.0,
    long_only: bool = False,
    until: pd.Timestamp | None = None,
) -> WalkForward:
    """Stitch the champions chosen by ``decisions``, the automatic decisions of ``symbol``.

    ``decisions`` has one row per decided as-of with the columns of
    ``registry.promotion.history``: ``as_of`` and the champion after the decision
    (``champion_family``, ``champion_as_of``, ``champion_version``; null: flat). The caller
    reads them from the registry, so the backtest package does not depend on it.
    ``as_of_end`` maps each decided as-of (partition start) to its end, the decision time.
    Each champion is traded from its stored bytes, which must still be the version decided.
    ``until``: the last decision's champion trades up to it too (the live, open-ended
    segment of paper trading); without it the last decision only ends the record.
    """
    decisions = decisions.sort_values("as_of")
    repeated = decisions["as_of"][decisions["as_of"].duplicated()]
    if len(repeated):
        raise WalkForwardError(
            f"{symbol}: more than one decision for as-of {repeated.iloc[0]}; pass one "
            "automatic decision per as-of"
        )
    if len(decisions) < (1 if until is not None else 2):
        raise WalkForwardError(
            f"{symbol}: a walk-forward needs at least two recorded decisions, found "
            f"{len(decisions)}; backfill models, backtests and promotion over a range first"
        )
    ends = [as_of_end[pd.Timestamp(a)] for a in decisions["as_of"]]
    traded = decisions.iloc[:-1]
    if until is not None:
        ends.append(until)
        traded = decisions
    positions, segments = [], []
    for (_, row), start, end in zip(traded.iterrows(), ends[:-1], ends[1:], strict=True):
        artifact = None
        if pd.isna(row["champion_family"]):
            label = "none"
            times = read_bars(store, symbol, start, end)["open_time"]
            positions.append(pd.DataFrame({"open_time": times, "position": 0.0}))
        else:
            artifact = _decided_model(store, symbol, row)
            label = f"{artifact.family}@{_when(artifact.as_of)} ({artifact.version})"
            features = _features(store, symbol, start - context, end)
            predicted = artifact.load().predict(features)
            inside = predicted[predicted["open_time"] >= start].reset_index(drop=True)
            if inside["position"].isna().any():
                raise WalkForwardError(
                    f"{label} gave no position for some bars of [{start}, {end})"
                )
            positions.append(inside[["open_time", "position"]])
        segments.append(Segment(start, end, label, artifact))
    stitched = pd.concat(positions, ignore_index=True)
    bars = read_bars(store, symbol, ends[0], ends[-1])
    if not stitched["open_time"].equals(bars["open_time"]):
        raise WalkForwardError(f"{symbol}: features and bars of the record do not align")
    result = run_backtest(
        bars["open_time"],
        bars["open"],
        bars["close"],
        stitched["position"].to_numpy(np.float64),
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        long_only=long_only,
    )
    return WalkForward(
        symbol, segments, result, buy_and_hold(result), metrics_table(result, interval)
    )


def _when(as_of: pd.Timestamp) -> str:
    """The as-of as written in partition keys: a date, with the time on a sub-daily grid."""
    return f"{as_of:%Y-%m-%d}" if as_of == as_of.floor("D") else f"{as_of:%Y-%m-%d %H:%M}"


def _decided_model(store: DuckDBStore, symbol: str, row: pd.Series) -> ModelArtifact:
    """The stored model a decision chose, refused when its bytes are now another version
    (the slot was re-trained since): trading those would credit the decision with a model
    it never saw."""
    family, as_of, decided = row["champion_family"], row["champion_as_of"], row["champion_version"]
    artifact = read_model(store, family, symbol, as_of)
    if artifact.version != decided:
        raise WalkForwardError(
            f"{symbol}: the decision of as-of {row['as_of']:%Y-%m-%d %H:%M} chose {family}@"
            f"{as_of:%Y-%m-%d %H:%M} version {decided}, but the stored model is now version "
            f"{artifact.version} (re-trained since); re-run promotion from that as-of"
        )
    return artifact


def _cell(schema: str, table: str, symbol: str, column: str, start, end) -> TableSlice:
    return TableSlice(schema, table, (SliceCell((("symbol", symbol),), column, start, end),))


def read_bars(store: DuckDBStore, symbol: str, start, end) -> pd.DataFrame:
    return store.read(
        _cell("market_data", "raw_ohlcv", symbol, "open_time", start, end),
        columns=["open_time", "open", "close"],
        order_by=['"open_time"'],
    )


def _features(store: DuckDBStore, symbol: str, start, end) -> pd.DataFrame:
    return store.read(
        _cell("features", "features", symbol, "open_time", start, end),
        order_by=[f'"{c}"' for c in KEY_COLUMNS],
    )
