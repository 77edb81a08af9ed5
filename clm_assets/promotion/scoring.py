"""The production path of a promotion decision: every input ``judge.decide`` reads, built
from what the evaluation assets stored.

* Each family's record is stitched from ``evaluation.backtest_<family>`` (the held position
  of every evaluated bar) and ``registry.evaluations`` (which as-ofs, versions and windows),
  counting only evaluations of the version the registry holds now, and traded on
  ``market_data.raw_ohlcv`` with the deployment costs.
* The incumbent is re-scored from its stored bytes on ``[start, E)``, where ``start`` is
  the later of its own evaluation start and the earlier of the lookback start and its
  promotion: that covers the bars it shares with the candidates' records (paired test) and
  its whole forward record since promotion (its floors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from clm_assets.backtest.window import Costs, evaluate_on_window
from clm_assets.models.families import FAMILIES
from clm_assets.models.windows import Windows
from clm_assets.promotion.judge import IncumbentRecord, decide
from clm_assets.promotion.record import FamilyRecord, StoredEvaluation, stitch_record
from clm_assets.registry._db import has_table, naive
from clm_assets.registry.decisions import ChampionRef, Decision
from clm_assets.registry.evaluations import evaluation
from clm_assets.registry.gates import Gates
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets.storage.models import read_model
from clm_assets.storage.slices import symbol_slice

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Context:
    """What every record of one deployment is computed with."""

    gates: Gates
    costs: Costs
    interval: str
    families: tuple[str, ...] = tuple(FAMILIES)
    """The families judged: the deployment's (``CLM_FAMILIES``)."""

    @property
    def bar(self) -> pd.Timedelta:
        return interval_delta(self.interval)


def _evaluations(
    store: DuckDBStore, symbol: str, as_of: pd.Timestamp, window_start: pd.Timestamp
) -> pd.DataFrame:
    """Evaluation rows of ``symbol`` up to ``as_of`` whose window reaches into the lookback,
    of the version each model slot holds now."""
    with store.connect() as conn:
        if not (has_table(conn, "evaluations") and has_table(conn, "model_versions")):
            return pd.DataFrame(columns=["family", "as_of", "version", "eval_start", "eval_end"])
    return store.query(
        "SELECT e.family, e.as_of, e.version, e.eval_start, e.eval_end "
        "FROM registry.evaluations e JOIN registry.model_versions v "
        "ON e.family = v.family AND e.symbol = v.symbol AND e.as_of = v.as_of "
        "AND e.version = v.version "
        "WHERE e.symbol = ? AND e.as_of <= ? AND e.eval_end > ? ORDER BY e.family, e.as_of",
        [symbol, naive(as_of), naive(window_start)],
    )


def _held(
    store: DuckDBStore, family: str, symbol: str, rows: pd.DataFrame, start, end
) -> list[StoredEvaluation]:
    marks = ", ".join("?" for _ in range(len(rows)))
    held = store.query(
        f'SELECT as_of, open_time, position FROM evaluation."backtest_{family}" '
        f"WHERE symbol = ? AND as_of IN ({marks}) AND open_time >= ? AND open_time < ? "
        "ORDER BY as_of, open_time",
        [symbol, *(naive(a) for a in rows["as_of"]), naive(start), naive(end)],
    )
    by_as_of = dict(tuple(held.groupby("as_of")))
    return [
        StoredEvaluation(a, v, by_as_of.get(a, held.iloc[:0])[["open_time", "position"]])
        for a, v in zip(rows["as_of"], rows["version"], strict=True)
    ]


def family_records(
    store: DuckDBStore, symbol: str, as_of: pd.Timestamp, as_of_end: pd.Timestamp, ctx: Context
) -> tuple[list[FamilyRecord], list[str]]:
    """The record of every family evaluated at ``as_of`` (its candidates) over the
    lookback before ``as_of_end``, and the families without an evaluation of this as-of."""
    start = as_of_end - ctx.gates.lookback_days * DAY
    rows = _evaluations(store, symbol, as_of, start)
    bars = None
    records, missing = [], []
    for family in ctx.families:
        mine = rows[rows["family"] == family]
        current = mine[mine["as_of"] == as_of]
        if current.empty:
            missing.append(family)
            continue
        if bars is None:
            bars = store.read(
                symbol_slice("market_data", "raw_ohlcv", symbol, start - ctx.bar, as_of_end),
                columns=["open_time", "open", "close"],
                order_by=['"open_time"'],
            )
        stored = _held(store, family, symbol, mine, start, as_of_end)
        records.append(
            stitch_record(
                family,
                symbol,
                as_of,
                current["version"].iloc[0],
                stored,
                bars,
                (start, as_of_end),
                ctx.costs,
                ctx.bar,
            )
        )
    return records, missing


def incumbent_record(
    store: DuckDBStore,
    incumbent: ChampionRef,
    promoted_at: pd.Timestamp,
    as_of_end: pd.Timestamp,
    ctx: Context,
) -> IncumbentRecord:
    """The incumbent re-scored from its stored bytes up to ``as_of_end`` (module docstring).

    ``promoted_at`` is the end of the incumbent's as-of. Without an evaluation row of its
    registered version only its forward record is known to be out of sample.
    """
    with store.connect() as conn:
        row = evaluation(conn, incumbent.family, incumbent.symbol, incumbent.as_of)
    own_start = (
        row["eval_start"]
        if row is not None and row["version"] == incumbent.version
        else promoted_at
    )
    start = max(own_start, min(as_of_end - ctx.gates.lookback_days * DAY, promoted_at))
    artifact = read_model(store, incumbent.family, incumbent.symbol, incumbent.as_of)
    card = artifact.card
    wins = Windows(pd.Timestamp(card.train_start), pd.Timestamp(card.train_end), start, as_of_end)
    consumer = f"incumbent {incumbent.label}"
    result = evaluate_on_window(store, artifact, wins, ctx.interval, ctx.costs, consumer).result
    return IncumbentRecord(incumbent, promoted_at, result.open_time, result.returns, DAY / ctx.bar)


def decide_as_of(
    store: DuckDBStore,
    symbol: str,
    as_of: pd.Timestamp,
    end_of: Callable[[pd.Timestamp], pd.Timestamp],
    incumbent: ChampionRef | None,
    ctx: Context,
) -> Decision:
    """The decision of (``symbol``, ``as_of``) from what is stored: the function the
    promotion asset runs. ``end_of`` maps an as-of to the end of its partition (the moment
    its model could start trading)."""
    as_of_end = end_of(as_of)
    records, missing = family_records(store, symbol, as_of, as_of_end, ctx)
    inc = (
        None
        if incumbent is None
        else incumbent_record(store, incumbent, end_of(incumbent.as_of), as_of_end, ctx)
    )
    return decide(
        symbol,
        as_of,
        records,
        inc,
        ctx.gates,
        missing=missing,
        made_with={"costs": ctx.costs.as_dict(), "interval": ctx.interval},
    )
