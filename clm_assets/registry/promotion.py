"""Champion promotion, its record and its undo: ``registry.promotions`` and the
statuses in ``registry.model_versions``.

Flow for one (symbol, as-of): ``clm_assets.promotion.judge.decide`` gates each family's
out-of-sample record, judges the incumbent and picks a champion (or retires the incumbent);
:func:`apply` writes the statuses and the decision row in one transaction.
:func:`rollback` restores the champion before the current one, :func:`promote_manual`
installs an operator's choice. :func:`champion`, :func:`incumbent_for` and :func:`history`
read the result.

The record (invariant 5, "promotion is explainable"):

* Every decision row holds, per candidate family, the full gate report (value, threshold,
  comparator, outcome of each gate) and the metrics it was computed from, plus a
  human-readable reason, the champion after the decision (``champion_*``) and the one
  before it (``previous_*``). Refusals (``KEPT_INCUMBENT``, ``NO_CHAMPION``) and
  retirements (``RETIRED_INCUMBENT``) are rows too.
* ``seq`` orders decisions (``decided_at`` can tie at microsecond resolution).

Statuses in ``registry.model_versions`` (at most one PRODUCTION row per symbol):

* an automatic decision sets its candidates (the rows of its (symbol, as-of)) to
  PRODUCTION (the champion), CANDIDATE (passed every gate, not chosen) or REJECTED
  (failed a gate), and every other PRODUCTION row of the symbol to RETIRED;
* re-applying a decision for an as-of already decided replaces the earlier automatic row
  (one per (symbol, as-of)) and leaves the same statuses. A re-run compares its candidates
  with the champion *before* that as-of (:func:`incumbent_for`), never with the champion
  the earlier run chose itself, and identity is (family, as-of), not the version string;
* decisions are applied in as-of order per symbol: an automatic decision for an as-of
  older than one already decided is refused, because it would install an older model over
  the record of newer ones (re-run the later as-ofs after it instead).

Rollback walks the promotion history like an undo stack: the champion restored is the
``previous_*`` of the latest PROMOTED / MANUAL_PROMOTE row that installed the current
champion, so two rollbacks go back two champions (a rollback never "rolls forward" to the
model it just retired).

Functions take an open DuckDB connection (``DuckDBStore.connect()`` or ``.transaction()``).
Writers run in one transaction: their own, or the caller's when one is already open.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from clm_assets.registry._db import atomic, dumps, has_table, json_safe, naive, utc, utc_now
from clm_assets.registry.decisions import (
    AUTOMATIC_ACTIONS,
    MANUAL_PROMOTE,
    PROMOTED,
    RETIRED_INCUMBENT,
    ROLLBACK,
    ChampionRef,
    Decision,
    RegistryError,
)
from clm_assets.registry.gates import GateReport
from clm_assets.registry.schema import PROMOTION_COLUMNS, ensure_schema
from clm_assets.registry.versions import CANDIDATE, PRODUCTION, REJECTED, RETIRED

# --------------------------------------------------------------------------- model_versions rows


def _ref(family: Any, symbol: str, as_of: Any, version: Any) -> ChampionRef | None:
    if family is None:
        return None
    return ChampionRef(str(family), symbol, utc(as_of), str(version))


def _registered(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any
) -> tuple[str, str] | None:
    """(version, status) of the model_versions row, or None."""
    row = conn.execute(
        "SELECT version, status FROM registry.model_versions "
        "WHERE family = ? AND symbol = ? AND as_of = ?",
        [family, symbol, naive(as_of)],
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _set_status(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any, status: str
) -> None:
    conn.execute(
        "UPDATE registry.model_versions SET status = ? "
        "WHERE family = ? AND symbol = ? AND as_of = ?",
        [status, family, symbol, naive(as_of)],
    )


def _retire_production_except(
    conn: duckdb.DuckDBPyConnection, symbol: str, keep: ChampionRef | None
) -> None:
    if keep is None:
        conn.execute(
            "UPDATE registry.model_versions SET status = ? WHERE symbol = ? AND status = ?",
            [RETIRED, symbol, PRODUCTION],
        )
    else:
        conn.execute(
            "UPDATE registry.model_versions SET status = ? WHERE symbol = ? AND status = ? "
            "AND NOT (family = ? AND as_of = ?)",
            [RETIRED, symbol, PRODUCTION, keep.family, naive(keep.as_of)],
        )


# --------------------------------------------------------------------------- promotions rows


def _promotion_rows(
    conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    cols = ", ".join(PROMOTION_COLUMNS)
    rows = conn.execute(
        f"SELECT {cols} FROM registry.promotions WHERE {where} ORDER BY seq", list(params)
    ).fetchall()
    return [dict(zip(PROMOTION_COLUMNS, row, strict=True)) for row in rows]


def _insert_decision(conn: duckdb.DuckDBPyConnection, decision: Decision) -> None:
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM registry.promotions").fetchone()
    c, p = decision.champion, decision.previous
    conn.execute(
        f"INSERT INTO registry.promotions ({', '.join(PROMOTION_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in PROMOTION_COLUMNS)})",
        [
            decision.decision_id,
            seq,
            decision.symbol,
            naive(decision.as_of),
            naive(decision.decided_at),
            decision.action,
            None if c is None else c.family,
            None if c is None else c.version,
            None if c is None else naive(c.as_of),
            None if p is None else p.family,
            None if p is None else p.version,
            None if p is None else naive(p.as_of),
            bool(decision.forced),
            dumps(decision.gate_reports),
            decision.reason,
        ],
    )


# --------------------------------------------------------------------------- reads


def champion(conn: duckdb.DuckDBPyConnection, symbol: str) -> ChampionRef | None:
    """The PRODUCTION model of ``symbol``, or None. Read-only (creates no table)."""
    if not has_table(conn, "model_versions"):
        return None
    rows = conn.execute(
        "SELECT family, as_of, version FROM registry.model_versions "
        "WHERE symbol = ? AND status = ? ORDER BY family, as_of",
        [symbol, PRODUCTION],
    ).fetchall()
    if len(rows) > 1:
        found = ", ".join(f"{f}@{a}" for f, a, _ in rows)
        raise RegistryError(f"{symbol} has {len(rows)} PRODUCTION models ({found}); expected one")
    return _ref(rows[0][0], symbol, rows[0][1], rows[0][2]) if rows else None


def incumbent_for(conn: duckdb.DuckDBPyConnection, symbol: str, as_of: Any) -> ChampionRef | None:
    """The champion the candidates of (``symbol``, ``as_of``) must beat.

    The current champion, unless the automatic decision of this very as-of (a re-run)
    changed it (PROMOTED a model, or RETIRED_INCUMBENT and left the symbol flat): then the
    champion that decision replaced, so a re-run neither compares a model with itself nor
    forgets the incumbent it retired.
    """
    current = champion(conn, symbol)
    if not has_table(conn, "promotions"):
        return current
    earlier = _promotion_rows(
        conn,
        "symbol = ? AND as_of = ? AND action IN (?, ?)",
        [symbol, naive(as_of), PROMOTED, RETIRED_INCUMBENT],
    )
    if earlier:
        row = earlier[-1]
        installed = _ref(
            row["champion_family"], symbol, row["champion_as_of"], row["champion_version"]
        )
        changed = (installed is None and current is None) or (
            installed is not None and installed.same_model(current)
        )
        if changed:
            return _ref(
                row["previous_family"], symbol, row["previous_as_of"], row["previous_version"]
            )
    return current


def history(conn: duckdb.DuckDBPyConnection, symbol: str) -> pd.DataFrame:
    """Every decision of ``symbol`` in the order it was recorded (``gate_reports`` parsed,
    timestamps tz-aware UTC). Empty frame when nothing was decided yet."""
    if not has_table(conn, "promotions"):
        return pd.DataFrame(columns=list(PROMOTION_COLUMNS))
    frame = pd.DataFrame(
        _promotion_rows(conn, "symbol = ?", [symbol]), columns=list(PROMOTION_COLUMNS)
    )
    for col in ("as_of", "decided_at", "champion_as_of", "previous_as_of"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    frame["gate_reports"] = [json.loads(g) for g in frame["gate_reports"]]
    return frame


def newest_decided(conn: duckdb.DuckDBPyConnection) -> dict[str, pd.Timestamp]:
    """Per symbol, the newest as-of with an automatic decision: ``apply`` refuses any older
    one, so a sensor asks this before requesting a retrain (empty when none yet)."""
    if not has_table(conn, "promotions"):
        return {}
    rows = conn.execute(
        "SELECT symbol, max(as_of) FROM registry.promotions "
        f"WHERE action IN ({', '.join('?' for _ in AUTOMATIC_ACTIONS)}) GROUP BY symbol",
        list(AUTOMATIC_ACTIONS),
    ).fetchall()
    return {symbol: utc(as_of) for symbol, as_of in rows}


# --------------------------------------------------------------------------- writes


def apply(conn: duckdb.DuckDBPyConnection, decision: Decision) -> None:
    """Write an automatic decision: statuses and its promotions row, in one transaction.

    Refused (``RegistryError``, nothing written) when a candidate's registry row is missing
    or holds another version than the one evaluated, when the champion the decision was
    made against is no longer the one in place (stale decision), when a later as-of of the
    symbol was already decided, or when a kept incumbent is not registered.
    """
    if decision.action not in AUTOMATIC_ACTIONS:
        raise RegistryError(
            f"apply() writes {', '.join(AUTOMATIC_ACTIONS)} decisions; {decision.action} is "
            "recorded by rollback() / promote_manual()"
        )
    symbol, as_of = decision.symbol, decision.as_of
    with atomic(conn):
        ensure_schema(conn)
        (latest,) = conn.execute(
            "SELECT max(as_of) FROM registry.promotions WHERE symbol = ? "
            f"AND action IN ({', '.join('?' for _ in AUTOMATIC_ACTIONS)})",
            [symbol, *AUTOMATIC_ACTIONS],
        ).fetchone()
        if latest is not None and utc(latest) > as_of:
            raise RegistryError(
                f"{symbol}: as-of {utc(latest).isoformat()} is already decided; a decision "
                f"for the earlier as-of {as_of.isoformat()} would overwrite newer history. "
                "Re-run the as-ofs in order from this one."
            )
        for c in decision.candidates:
            row = _registered(conn, c.family, symbol, c.as_of)
            if row is None:
                raise RegistryError(
                    f"candidate {c.family} {symbol} {c.as_of.isoformat()} is not registered"
                )
            if row[0] != c.version:
                raise RegistryError(
                    f"candidate {c.family} {symbol} {c.as_of.isoformat()} was evaluated as "
                    f"version {c.version} but the registry holds {row[0]}: re-evaluate"
                )
        expected = incumbent_for(conn, symbol, as_of)
        same = (expected is None and decision.previous is None) or (
            expected is not None and expected.same_model(decision.previous)
        )
        if not same:
            decided = "no champion" if decision.previous is None else decision.previous.label
            now = "none" if expected is None else expected.label
            raise RegistryError(
                f"stale decision for {symbol} {as_of.isoformat()}: decided against {decided}, "
                f"but the incumbent is now {now}; decide again"
            )
        target = decision.champion
        if target is not None and _registered(conn, target.family, symbol, target.as_of) is None:
            raise RegistryError(f"champion {target.label} is not registered")

        _retire_production_except(conn, symbol, target)
        for c in decision.candidates:
            if target is not None and target.family == c.family and target.as_of == c.as_of:
                status = PRODUCTION
            else:
                status = CANDIDATE if decision.reports[c.family].passed else REJECTED
            _set_status(conn, c.family, symbol, c.as_of, status)
        if target is not None:
            _set_status(conn, target.family, symbol, target.as_of, PRODUCTION)

        conn.execute(
            "DELETE FROM registry.promotions WHERE symbol = ? AND as_of = ? "
            f"AND action IN ({', '.join('?' for _ in AUTOMATIC_ACTIONS)})",
            [symbol, naive(as_of), *AUTOMATIC_ACTIONS],
        )
        _insert_decision(conn, decision)


def rollback(conn: duckdb.DuckDBPyConnection, symbol: str, reason: str) -> Decision:
    """Restore the champion before the current one; record a ROLLBACK row with both.

    The restored model is the ``previous_*`` of the latest PROMOTED / MANUAL_PROMOTE
    decision that installed the current champion (see the module docstring). Raises
    ``RegistryError`` when there is no champion, no recorded previous champion, or the
    previous champion's registry row is gone or holds other bytes than it did.
    """
    if not reason or not reason.strip():
        raise RegistryError("a rollback needs a reason (it is recorded)")
    with atomic(conn):
        ensure_schema(conn)
        current = champion(conn, symbol)
        if current is None:
            raise RegistryError(f"{symbol} has no champion to roll back")
        installs = _promotion_rows(
            conn,
            "symbol = ? AND action IN (?, ?) AND champion_family = ? AND champion_as_of = ?",
            [symbol, PROMOTED, MANUAL_PROMOTE, current.family, naive(current.as_of)],
        )
        if not installs:
            raise RegistryError(
                f"{symbol}: no recorded promotion installed the champion {current.label}; "
                "nothing to roll back to"
            )
        row = installs[-1]
        previous = _ref(
            row["previous_family"], symbol, row["previous_as_of"], row["previous_version"]
        )
        if previous is None:
            raise RegistryError(
                f"{symbol}: {current.label} was the first champion (decision "
                f"{row['decision_id']}); there is no previous champion to restore"
            )
        registered = _registered(conn, previous.family, symbol, previous.as_of)
        if registered is None:
            raise RegistryError(f"{symbol}: previous champion {previous.label} is not registered")
        if registered[0] != previous.version:
            raise RegistryError(
                f"{symbol}: previous champion {previous.label} now holds version "
                f"{registered[0]}, not the bytes that were champion; cannot restore it"
            )
        _set_status(conn, current.family, symbol, current.as_of, RETIRED)
        _set_status(conn, previous.family, symbol, previous.as_of, PRODUCTION)
        decision = Decision(
            decision_id=uuid.uuid4().hex,
            symbol=symbol,
            as_of=previous.as_of,
            decided_at=utc_now(),
            action=ROLLBACK,
            champion=previous,
            previous=current,
            reason=(
                f"rollback: {reason.strip()}. Restored {previous.label} (replaced by decision "
                f"{row['decision_id']}), retired {current.label}."
            ),
        )
        _insert_decision(conn, decision)
    return decision


def promote_manual(
    conn: duckdb.DuckDBPyConnection,
    symbol: str,
    family: str,
    as_of: Any,
    reason: str,
    *,
    force: bool = False,
) -> Decision:
    """Install (``family``, ``symbol``, ``as_of``) as champion by an operator's decision.

    The model must have been judged eligible by the automatic decision of its as-of (the
    gates of its family's record, as recorded in ``registry.promotions``), for the version
    the registry holds now, and that decision's paired test must concern the current
    champion: a judgement against another incumbent, of another version, or no judgement
    at all does not count. ``force=True`` overrides and is recorded (``forced`` column and
    reason) along with the gate values it overrode.
    """
    if not reason or not reason.strip():
        raise RegistryError("a manual promotion needs a reason (it is recorded)")
    as_of = utc(as_of)
    with atomic(conn):
        ensure_schema(conn)
        registered = _registered(conn, family, symbol, as_of)
        if registered is None:
            raise RegistryError(f"{family} {symbol} {as_of.isoformat()} is not registered")
        model = ChampionRef(family, symbol, as_of, registered[0])
        current = champion(conn, symbol)
        if model.same_model(current):
            raise RegistryError(f"{model.label} is already the champion of {symbol}")

        notes, judged = _judgement(conn, model, current)
        passed = judged is not None and judged.passed and not notes
        note_text = f" ({'; '.join(notes)})" if notes else ""
        summary = "not judged" if judged is None else judged.summary()
        if not passed and not force:
            raise RegistryError(
                f"manual promotion of {model.label} refused: {summary}{note_text}. "
                "Pass force=True to override (it is recorded)."
            )
        verdict = (
            "passed all gates at its decision"
            if passed
            else f"FORCED past its judgement: {summary}{note_text}"
        )
        replaces = f"replaces {current.label}" if current else "first champion of the symbol"
        decision = Decision(
            decision_id=uuid.uuid4().hex,
            symbol=symbol,
            as_of=as_of,
            decided_at=utc_now(),
            action=MANUAL_PROMOTE,
            champion=model,
            previous=current,
            reason=f"manual promotion: {reason.strip()}. {model.label} {verdict}; {replaces}.",
            reports={} if judged is None else {family: judged},
            gate_reports=json_safe(
                {
                    family: {
                        "as_of": as_of,
                        "version": model.version,
                        "eligible": passed,
                        "report": None if judged is None else judged.as_dict(),
                        "incumbent": None if current is None else current.as_dict(),
                        "notes": notes,
                    }
                }
            ),
            forced=bool(force),
        )
        _retire_production_except(conn, symbol, model)
        _set_status(conn, family, symbol, as_of, PRODUCTION)
        _insert_decision(conn, decision)
    return decision


def _judgement(
    conn: duckdb.DuckDBPyConnection, model: ChampionRef, current: ChampionRef | None
) -> tuple[list[str], GateReport | None]:
    """The gate report the automatic decision of ``model``'s as-of recorded for it, and the
    reasons it does not count now (empty: it counts)."""
    rows = _promotion_rows(
        conn,
        f"symbol = ? AND as_of = ? AND action IN ({', '.join('?' for _ in AUTOMATIC_ACTIONS)})",
        [model.symbol, naive(model.as_of), *AUTOMATIC_ACTIONS],
    )
    if not rows:
        return ["no automatic decision judged this as-of"], None
    row = rows[-1]
    entry = json.loads(row["gate_reports"]).get(model.family)
    if not entry or not entry.get("report"):
        return [f"{model.family} was not a candidate of decision {row['decision_id']}"], None
    judged = GateReport.from_dict(entry["report"])
    notes = []
    if entry.get("version") != model.version:
        notes.append(
            f"the decision judged version {entry.get('version')}, the registry holds "
            f"{model.version}"
        )
    against = _ref(row["previous_family"], model.symbol, row["previous_as_of"],
                   row["previous_version"])  # fmt: skip
    # A refresh of the champion's own family needs no paired test; any other candidate's
    # paired test must have been against the champion in place now.
    if current is not None and current.family != model.family and not current.same_model(against):
        was = "no champion" if against is None else against.label
        notes.append(f"its paired test was against {was}, the champion is {current.label}")
    return notes, judged
