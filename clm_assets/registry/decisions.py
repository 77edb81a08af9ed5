"""Champion selection, pure: no connection, nothing written.

Every evaluated family of one (symbol, as-of) becomes a :class:`Candidate`; :func:`decide`
gates them (``registry.gates``) and picks a champion, or keeps the incumbent, and returns
a :class:`Decision` that explains itself. ``registry.promotion`` writes decisions
(``apply``) and makes the manual ones (``rollback``, ``promote_manual``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clm_assets.backtest.engine import BacktestResult
from clm_assets.backtest.metrics import metrics_table, per_bar_sharpe
from clm_assets.registry._db import json_safe, utc, utc_now
from clm_assets.registry.gates import GateReport, Gates, evaluate, finite_or_none

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


class RegistryError(RuntimeError):
    """A registry change was refused: it would break the record or the status invariants."""


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class ChampionRef:
    """One registered model: identity (family, symbol, as-of) plus the version it holds."""

    family: str
    symbol: str
    as_of: pd.Timestamp
    version: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", utc(self.as_of))

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
        object.__setattr__(self, "as_of", utc(self.as_of))

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
    """What :func:`decide` (or ``promotion.rollback`` / ``promotion.promote_manual``) decided,
    and why.

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
            "gate_reports": json_safe(self.gate_reports),
        }


# --------------------------------------------------------------------------- decide


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
    ``promotion.incumbent_for`` (the champion before that as-of), not ``promotion.champion``.
    """
    gates = gates or Gates()
    as_of = utc(as_of)
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
        decided_at=utc_now(),
        action=action,
        champion=champion,
        previous=incumbent,
        reason=reason,
        reports=reports,
        candidates=tuple(candidates),
        gate_reports=json_safe(gate_reports),
    )
