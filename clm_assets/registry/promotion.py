"""Champion selection, its record and its undo: ``registry.evaluations`` and
``registry.promotions`` next to ``registry.model_versions``.

Flow for one (symbol, as-of): every evaluated family becomes a :class:`Candidate`;
:func:`decide` gates them (``registry.gates``) and picks a champion; :func:`apply` writes
the statuses and the decision row in one transaction. :func:`rollback` restores the
champion before the current one, :func:`promote_manual` installs an operator's choice.

The record (invariant 5, "promotion is explainable"):

* Every decision row holds, per candidate family, the full gate report (value, threshold,
  comparator, outcome of each gate) and the metrics it was computed from, plus a
  human-readable reason, the champion after the decision (``champion_*``) and the one
  before it (``previous_*``). Refusals (``KEPT_INCUMBENT``, ``NO_CHAMPION``) are rows too.
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clm_assets.backtest.engine import BacktestResult
from clm_assets.backtest.metrics import metrics_table, per_bar_sharpe
from clm_assets.registry import versions
from clm_assets.registry.gates import GateReport, Gates, evaluate, finite_or_none
from clm_assets.registry.versions import CANDIDATE, PRODUCTION, REJECTED, RETIRED

PROMOTED, KEPT_INCUMBENT, NO_CHAMPION, ROLLBACK, MANUAL_PROMOTE = (
    "PROMOTED",
    "KEPT_INCUMBENT",
    "NO_CHAMPION",
    "ROLLBACK",
    "MANUAL_PROMOTE",
)
ACTIONS = (PROMOTED, KEPT_INCUMBENT, NO_CHAMPION, ROLLBACK, MANUAL_PROMOTE)
AUTOMATIC_ACTIONS = (PROMOTED, KEPT_INCUMBENT, NO_CHAMPION)
"""Actions of :func:`decide`; one such row per (symbol, as-of), replaced on re-run."""

DDL = """
CREATE SCHEMA IF NOT EXISTS registry;
CREATE TABLE IF NOT EXISTS registry.evaluations (
    family VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    version VARCHAR NOT NULL,
    eval_start TIMESTAMP NOT NULL,
    eval_end TIMESTAMP NOT NULL,
    bars BIGINT NOT NULL,
    metrics JSON NOT NULL,
    sharpe DOUBLE,
    max_drawdown DOUBLE,
    profit_factor DOUBLE,
    trade_count BIGINT,
    psr_vs_flat DOUBLE,
    tearsheet_path VARCHAR,
    incumbent_family VARCHAR,
    incumbent_as_of TIMESTAMP,
    incumbent_version VARCHAR,
    evaluated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (family, symbol, as_of)
);
CREATE TABLE IF NOT EXISTS registry.promotions (
    decision_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    decided_at TIMESTAMP NOT NULL,
    action VARCHAR NOT NULL,
    champion_family VARCHAR,
    champion_version VARCHAR,
    champion_as_of TIMESTAMP,
    previous_family VARCHAR,
    previous_version VARCHAR,
    previous_as_of TIMESTAMP,
    forced BOOLEAN NOT NULL,
    gate_reports JSON NOT NULL,
    reason TEXT NOT NULL
);
"""

_PROMOTION_COLUMNS = (
    "decision_id",
    "seq",
    "symbol",
    "as_of",
    "decided_at",
    "action",
    "champion_family",
    "champion_version",
    "champion_as_of",
    "previous_family",
    "previous_version",
    "previous_as_of",
    "forced",
    "gate_reports",
    "reason",
)


class RegistryError(RuntimeError):
    """A registry change was refused: it would break the record or the status invariants."""


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    versions.ensure_schema(conn)
    conn.execute(DDL)


# --------------------------------------------------------------------------- value types


def _utc(ts: Any) -> pd.Timestamp:
    """A tz-aware UTC timestamp; naive input is read as UTC (how it is stored)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _naive(ts: Any) -> datetime:
    return _utc(ts).tz_localize(None).to_pydatetime()


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


@dataclass(frozen=True)
class ChampionRef:
    """One registered model: identity (family, symbol, as-of) plus the version it holds."""

    family: str
    symbol: str
    as_of: pd.Timestamp
    version: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", _utc(self.as_of))

    def same_model(self, other: ChampionRef | None) -> bool:
        """Same (family, symbol, as-of): a re-trained version is still the same model slot."""
        return (
            other is not None
            and self.family == other.family
            and self.symbol == other.symbol
            and self.as_of == other.as_of
        )

    @property
    def label(self) -> str:
        return f"{self.family}@{self.as_of.isoformat()} ({self.version})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "symbol": self.symbol,
            "as_of": self.as_of.isoformat(),
            "version": self.version,
        }


@dataclass(frozen=True)
class Candidate:
    """One family's model of a (symbol, as-of) with the metrics of its evaluation.

    ``metrics`` has ``backtest.metrics.metrics_table`` keys; ``psr_vs_incumbent`` is the PSR
    against the incumbent's per-bar Sharpe on the same window (None without an incumbent or
    when undefined); ``per_bar_sharpe`` is the candidate's own non-annualized Sharpe.
    """

    family: str
    as_of: pd.Timestamp
    version: str
    metrics: Mapping[str, float | None]
    psr_vs_incumbent: float | None = None
    per_bar_sharpe: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", _utc(self.as_of))

    @classmethod
    def from_backtest(
        cls,
        family: str,
        as_of: Any,
        version: str,
        result: BacktestResult,
        interval: str,
        *,
        incumbent_returns: Any = None,
        score: Any = None,
        realized: Any = None,
    ) -> Candidate:
        """Metrics of a backtest (and PSR vs the incumbent's returns on the same bars)."""
        table = metrics_table(
            result, interval, score=score, realized=realized, incumbent_returns=incumbent_returns
        )
        return cls(
            family=family,
            as_of=as_of,
            version=version,
            metrics=table,
            psr_vs_incumbent=table["psr_vs_incumbent"],
            per_bar_sharpe=per_bar_sharpe(result.returns),
        )


@dataclass(frozen=True)
class Decision:
    """What :func:`decide`, :func:`rollback` or :func:`promote_manual` decided, and why.

    ``champion`` is the champion after the decision (None: the symbol has none),
    ``previous`` the one before it. ``gate_reports`` is the JSON record written to
    ``registry.promotions`` (per candidate family: gate report, metrics, inputs).
    """

    decision_id: str
    symbol: str
    as_of: pd.Timestamp
    decided_at: pd.Timestamp
    action: str
    champion: ChampionRef | None
    previous: ChampionRef | None
    reason: str
    reports: Mapping[str, GateReport] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    gate_reports: Mapping[str, Any] = field(default_factory=dict)
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (for run metadata)."""
        return {
            "decision_id": self.decision_id,
            "symbol": self.symbol,
            "as_of": self.as_of.isoformat(),
            "decided_at": self.decided_at.isoformat(),
            "action": self.action,
            "champion": None if self.champion is None else self.champion.as_dict(),
            "previous": None if self.previous is None else self.previous.as_dict(),
            "forced": self.forced,
            "reason": self.reason,
            "gate_reports": _json_safe(self.gate_reports),
        }


def _json_safe(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None (JSON has no NaN, and it is not a value)."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return bool(value) if isinstance(value, np.bool_) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    raise TypeError(f"cannot record {type(value).__name__} {value!r} as JSON")


def _dumps(value: Any) -> str:
    return json.dumps(_json_safe(value), sort_keys=True, allow_nan=False)


# --------------------------------------------------------------------------- decide (pure)


def _fmt(value: float | None) -> str:
    return "None" if value is None else f"{value:.4g}"


def decide(
    symbol: str,
    as_of: Any,
    candidates: Sequence[Candidate],
    incumbent: ChampionRef | None,
    gates: Gates | None = None,
) -> Decision:
    """Gate every candidate and pick the champion of (``symbol``, ``as_of``).

    Eligible = passed every gate. The champion is the eligible candidate with the highest
    PSR vs flat, ties broken by the higher annualized Sharpe, then the family name
    (alphabetical) so the outcome is deterministic. With none eligible the incumbent stays
    (KEPT_INCUMBENT) or the symbol has no champion (NO_CHAMPION).

    ``incumbent`` is the champion the candidates must beat; when re-running an as-of pass
    :func:`incumbent_for` (the champion before that as-of), not :func:`champion`.
    """
    gates = gates or Gates()
    as_of = _utc(as_of)
    families = [c.family for c in candidates]
    if len(set(families)) != len(families):
        raise RegistryError(f"duplicate candidate families for {symbol} {as_of}: {families}")
    for c in candidates:
        if c.as_of != as_of:
            raise RegistryError(
                f"candidate {c.family} is of as-of {c.as_of}, the decision is for {as_of}"
            )
    if incumbent is not None:
        if incumbent.symbol != symbol:
            raise RegistryError(
                f"incumbent {incumbent.label} is of {incumbent.symbol}, not {symbol}"
            )
        if any(incumbent.family == c.family and incumbent.as_of == as_of for c in candidates):
            raise RegistryError(
                f"the incumbent {incumbent.label} is one of the candidates of this as-of: "
                "decide against the champion before this as-of (incumbent_for(conn, symbol, "
                "as_of) gives it after an automatic decision; after a manual promotion or a "
                "rollback to a model of this as-of, roll back first)"
            )

    has_incumbent = incumbent is not None
    reports = {
        c.family: evaluate(c.metrics, c.psr_vs_incumbent, has_incumbent, gates) for c in candidates
    }

    def psr(c: Candidate) -> float:
        return finite_or_none(c.metrics.get("psr")) or 0.0  # eligible => computable

    def sharpe(c: Candidate) -> float:
        return finite_or_none(c.metrics.get("sharpe")) or 0.0

    eligible = sorted(
        (c for c in candidates if reports[c.family].passed),
        key=lambda c: (-psr(c), -sharpe(c), c.family),
    )
    rank = {c.family: i + 1 for i, c in enumerate(eligible)}
    gate_reports = {
        c.family: {
            "as_of": c.as_of,
            "version": c.version,
            "eligible": reports[c.family].passed,
            "rank": rank.get(c.family),
            "report": reports[c.family].as_dict(),
            "psr_vs_incumbent": c.psr_vs_incumbent,
            "per_bar_sharpe": c.per_bar_sharpe,
            "incumbent": None if incumbent is None else incumbent.as_dict(),
            "metrics": dict(c.metrics),
        }
        for c in candidates
    }

    where = f"{symbol} as of {as_of.isoformat()}"
    rejected = [
        f"{c.family} ({reports[c.family].summary()})" for c in candidates if c.family not in rank
    ]
    rejected_text = f" Rejected: {'; '.join(rejected)}." if rejected else ""
    if eligible:
        best = eligible[0]
        action = PROMOTED
        champion: ChampionRef | None = ChampionRef(best.family, symbol, as_of, best.version)
        ranking = ", ".join(
            f"{c.family} psr {_fmt(psr(c))} sharpe {_fmt(sharpe(c))}" for c in eligible
        )
        replaces = f"replaces {incumbent.label}" if incumbent else "first champion of the symbol"
        reason = (
            f"{best.family} ({best.version}) promoted for {where}: passed all gates with the "
            f"highest PSR vs flat of {len(eligible)} eligible [{ranking}]; {replaces}."
            f"{rejected_text}"
        )
    else:
        head = (
            f"no candidate passed all gates for {where}"
            if candidates
            else f"no candidate was evaluated for {where}"
        )
        if incumbent is not None:
            action, champion = KEPT_INCUMBENT, incumbent
            tail = f"incumbent {incumbent.label} stays champion"
        else:
            action, champion = NO_CHAMPION, None
            tail = f"no incumbent: {symbol} has no champion"
        reason = f"{head}; {tail}.{rejected_text}"

    return Decision(
        decision_id=uuid.uuid4().hex,
        symbol=symbol,
        as_of=as_of,
        decided_at=_now(),
        action=action,
        champion=champion,
        previous=incumbent,
        reason=reason,
        reports=reports,
        candidates=tuple(candidates),
        gate_reports=_json_safe(gate_reports),
    )


# --------------------------------------------------------------------------- connections


def _in_transaction(conn: duckdb.DuckDBPyConnection) -> bool:
    """Inside an explicit transaction the transaction id stays put between statements;
    in auto-commit mode every statement gets a new one. (A failed ``BEGIN`` would abort
    the caller's transaction, so it cannot be used as the probe.)"""
    first = conn.execute("SELECT txid_current()").fetchone()
    second = conn.execute("SELECT txid_current()").fetchone()
    return first == second


@contextmanager
def _atomic(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Our own transaction, or the caller's when one is open (it commits or rolls back)."""
    if _in_transaction(conn):
        yield
        return
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_table(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'registry' "
        "AND table_name = ?",
        [table],
    ).fetchall()
    return bool(rows)


def _ref(family: Any, symbol: str, as_of: Any, version: Any) -> ChampionRef | None:
    if family is None:
        return None
    return ChampionRef(str(family), symbol, _utc(as_of), str(version))


def _registered(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any
) -> tuple[str, str] | None:
    """(version, status) of the model_versions row, or None."""
    row = conn.execute(
        "SELECT version, status FROM registry.model_versions "
        "WHERE family = ? AND symbol = ? AND as_of = ?",
        [family, symbol, _naive(as_of)],
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _set_status(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any, status: str
) -> None:
    conn.execute(
        "UPDATE registry.model_versions SET status = ? "
        "WHERE family = ? AND symbol = ? AND as_of = ?",
        [status, family, symbol, _naive(as_of)],
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
            [RETIRED, symbol, PRODUCTION, keep.family, _naive(keep.as_of)],
        )


def _promotion_rows(
    conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    cols = ", ".join(_PROMOTION_COLUMNS)
    rows = conn.execute(
        f"SELECT {cols} FROM registry.promotions WHERE {where} ORDER BY seq", list(params)
    ).fetchall()
    return [dict(zip(_PROMOTION_COLUMNS, row, strict=True)) for row in rows]


def _insert_decision(conn: duckdb.DuckDBPyConnection, decision: Decision) -> None:
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM registry.promotions").fetchone()
    c, p = decision.champion, decision.previous
    conn.execute(
        f"INSERT INTO registry.promotions ({', '.join(_PROMOTION_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _PROMOTION_COLUMNS)})",
        [
            decision.decision_id,
            seq,
            decision.symbol,
            _naive(decision.as_of),
            _naive(decision.decided_at),
            decision.action,
            None if c is None else c.family,
            None if c is None else c.version,
            None if c is None else _naive(c.as_of),
            None if p is None else p.family,
            None if p is None else p.version,
            None if p is None else _naive(p.as_of),
            bool(decision.forced),
            _dumps(decision.gate_reports),
            decision.reason,
        ],
    )


# --------------------------------------------------------------------------- reads


def champion(conn: duckdb.DuckDBPyConnection, symbol: str) -> ChampionRef | None:
    """The PRODUCTION model of ``symbol``, or None. Read-only (creates no table)."""
    if not _has_table(conn, "model_versions"):
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

    The current champion, unless it was installed by the automatic decision of this very
    as-of (a re-run): then the champion that decision replaced, so a re-run neither compares
    a model with itself nor retires the champion it chose.
    """
    current = champion(conn, symbol)
    if current is None or not _has_table(conn, "promotions"):
        return current
    earlier = _promotion_rows(
        conn,
        "symbol = ? AND as_of = ? AND action = ?",
        [symbol, _naive(as_of), PROMOTED],
    )
    if earlier:
        row = earlier[-1]
        installed = _ref(
            row["champion_family"], symbol, row["champion_as_of"], row["champion_version"]
        )
        if installed is not None and installed.same_model(current):
            return _ref(
                row["previous_family"], symbol, row["previous_as_of"], row["previous_version"]
            )
    return current


def history(conn: duckdb.DuckDBPyConnection, symbol: str) -> pd.DataFrame:
    """Every decision of ``symbol`` in the order it was recorded (``gate_reports`` parsed,
    timestamps tz-aware UTC). Empty frame when nothing was decided yet."""
    if not _has_table(conn, "promotions"):
        return pd.DataFrame(columns=list(_PROMOTION_COLUMNS))
    frame = pd.DataFrame(
        _promotion_rows(conn, "symbol = ?", [symbol]), columns=list(_PROMOTION_COLUMNS)
    )
    for col in ("as_of", "decided_at", "champion_as_of", "previous_as_of"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    frame["gate_reports"] = [json.loads(g) for g in frame["gate_reports"]]
    return frame


def evaluation(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any
) -> dict[str, Any] | None:
    """The evaluation row of one model (metrics parsed, timestamps UTC), or None."""
    if not _has_table(conn, "evaluations"):
        return None
    cur = conn.execute(
        "SELECT * FROM registry.evaluations WHERE family = ? AND symbol = ? AND as_of = ?",
        [family, symbol, _naive(as_of)],
    )
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in cur.description], row, strict=True))
    out["metrics"] = json.loads(out["metrics"])
    for col in ("as_of", "eval_start", "eval_end", "incumbent_as_of", "evaluated_at"):
        if out[col] is not None:
            out[col] = _utc(out[col])
    return out


# --------------------------------------------------------------------------- writes


def record_evaluation(
    conn: duckdb.DuckDBPyConnection,
    *,
    family: str,
    symbol: str,
    as_of: Any,
    version: str,
    eval_start: Any,
    eval_end: Any,
    bars: int,
    metrics: Mapping[str, Any],
    tearsheet_path: str | None = None,
    incumbent: ChampionRef | None = None,
) -> None:
    """Insert or replace the evaluation of (``family``, ``symbol``, ``as_of``).

    ``metrics`` are ``metrics_table`` keys (stored whole as JSON, NaN as null; the gate
    metrics also as columns); ``incumbent`` is the champion ``psr_vs_incumbent`` was
    computed against (None: there was none), so a later manual promotion can tell whether
    that comparison still concerns the current champion.
    """
    if int(bars) < 0:
        raise RegistryError(f"bars must be >= 0, got {bars}")
    trades = finite_or_none(metrics.get("trade_count"))
    key = [family, symbol, _naive(as_of)]
    with _atomic(conn):
        ensure_schema(conn)
        conn.execute(
            "DELETE FROM registry.evaluations WHERE family = ? AND symbol = ? AND as_of = ?",
            key,
        )
        conn.execute(
            "INSERT INTO registry.evaluations (family, symbol, as_of, version, eval_start, "
            "eval_end, bars, metrics, sharpe, max_drawdown, profit_factor, trade_count, "
            "psr_vs_flat, tearsheet_path, incumbent_family, incumbent_as_of, "
            "incumbent_version, evaluated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                *key,
                version,
                _naive(eval_start),
                _naive(eval_end),
                int(bars),
                _dumps(dict(metrics)),
                finite_or_none(metrics.get("sharpe")),
                finite_or_none(metrics.get("max_drawdown")),
                finite_or_none(metrics.get("profit_factor")),
                None if trades is None else round(trades),
                finite_or_none(metrics.get("psr")),
                tearsheet_path,
                None if incumbent is None else incumbent.family,
                None if incumbent is None else _naive(incumbent.as_of),
                None if incumbent is None else incumbent.version,
                _naive(_now()),
            ],
        )


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
    with _atomic(conn):
        ensure_schema(conn)
        (latest,) = conn.execute(
            "SELECT max(as_of) FROM registry.promotions WHERE symbol = ? AND action IN (?, ?, ?)",
            [symbol, *AUTOMATIC_ACTIONS],
        ).fetchone()
        if latest is not None and _utc(latest) > as_of:
            raise RegistryError(
                f"{symbol}: as-of {_utc(latest).isoformat()} is already decided; a decision "
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
            "AND action IN (?, ?, ?)",
            [symbol, _naive(as_of), *AUTOMATIC_ACTIONS],
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
    with _atomic(conn):
        ensure_schema(conn)
        current = champion(conn, symbol)
        if current is None:
            raise RegistryError(f"{symbol} has no champion to roll back")
        installs = _promotion_rows(
            conn,
            "symbol = ? AND action IN (?, ?) AND champion_family = ? AND champion_as_of = ?",
            [symbol, PROMOTED, MANUAL_PROMOTE, current.family, _naive(current.as_of)],
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
            decided_at=_now(),
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
    gates: Gates | None = None,
) -> Decision:
    """Install (``family``, ``symbol``, ``as_of``) as champion by an operator's decision.

    The model's evaluation (``registry.evaluations``) must pass ``gates``: its metrics for
    the metric gates, and for the incumbent gate the ``psr_vs_incumbent`` it recorded,
    which only counts when it was computed against the current champion (otherwise that
    gate is not computable and fails: re-evaluate against the current champion). An
    evaluation of another version than the registered one does not count (every gate is
    then not computable). ``force=True`` overrides failed gates and is recorded (``forced``
    column and reason) along with the gate values it overrode.
    """
    gates = gates or Gates()
    if not reason or not reason.strip():
        raise RegistryError("a manual promotion needs a reason (it is recorded)")
    as_of = _utc(as_of)
    with _atomic(conn):
        ensure_schema(conn)
        registered = _registered(conn, family, symbol, as_of)
        if registered is None:
            raise RegistryError(f"{family} {symbol} {as_of.isoformat()} is not registered")
        model = ChampionRef(family, symbol, as_of, registered[0])
        current = champion(conn, symbol)
        if model.same_model(current):
            raise RegistryError(f"{model.label} is already the champion of {symbol}")

        notes: list[str] = []
        ev = evaluation(conn, family, symbol, as_of)
        metrics: dict[str, Any] = {}
        psr_inc: float | None = None
        if ev is None:
            notes.append("no evaluation recorded")
        elif ev["version"] != model.version:
            notes.append(
                f"the evaluation is of version {ev['version']}, the registry holds {model.version}"
            )
        else:
            metrics = ev["metrics"]
            if current is not None:
                evaluated_against = _ref(
                    ev["incumbent_family"], symbol, ev["incumbent_as_of"], ev["incumbent_version"]
                )
                if current.same_model(evaluated_against):
                    psr_inc = finite_or_none(metrics.get("psr_vs_incumbent"))
                else:
                    against = (
                        "no champion" if evaluated_against is None else evaluated_against.label
                    )
                    notes.append(
                        f"psr_vs_incumbent was computed against {against}, the champion is "
                        f"{current.label}"
                    )
        report = evaluate(metrics, psr_inc, current is not None, gates)
        note_text = f" ({'; '.join(notes)})" if notes else ""
        if not report.passed and not force:
            raise RegistryError(
                f"manual promotion of {model.label} refused: {report.summary()}{note_text}. "
                "Pass force=True to override (it is recorded)."
            )
        verdict = (
            "passed all gates"
            if report.passed
            else f"FORCED past failed gates: {report.summary()}{note_text}"
        )
        replaces = f"replaces {current.label}" if current else "first champion of the symbol"
        decision = Decision(
            decision_id=uuid.uuid4().hex,
            symbol=symbol,
            as_of=as_of,
            decided_at=_now(),
            action=MANUAL_PROMOTE,
            champion=model,
            previous=current,
            reason=f"manual promotion: {reason.strip()}. {model.label} {verdict}; {replaces}.",
            reports={family: report},
            gate_reports=_json_safe(
                {
                    family: {
                        "as_of": as_of,
                        "version": model.version,
                        "eligible": report.passed,
                        "report": report.as_dict(),
                        "psr_vs_incumbent": psr_inc,
                        "incumbent": None if current is None else current.as_dict(),
                        "notes": notes,
                        "metrics": metrics,
                    }
                }
            ),
            forced=bool(force),
        )
        _retire_production_except(conn, symbol, model)
        _set_status(conn, family, symbol, as_of, PRODUCTION)
        _insert_decision(conn, decision)
    return decision
