"""What a promotion decision is: the actions, the models it names and the record it writes.

Pure value types, no connection and no statistics. ``clm_assets.promotion.judge.decide``
makes the automatic decisions (it computes the statistics of each family's record and
gates them); ``registry.promotion`` writes decisions (``apply``) and makes the manual ones
(``rollback``, ``promote_manual``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clm_assets.registry._db import json_safe, utc
from clm_assets.registry.gates import GateReport

PROMOTED, KEPT_INCUMBENT, NO_CHAMPION, RETIRED_INCUMBENT, ROLLBACK, MANUAL_PROMOTE = (
    "PROMOTED",
    "KEPT_INCUMBENT",
    "NO_CHAMPION",
    "RETIRED_INCUMBENT",
    "ROLLBACK",
    "MANUAL_PROMOTE",
)
ACTIONS = (PROMOTED, KEPT_INCUMBENT, NO_CHAMPION, RETIRED_INCUMBENT, ROLLBACK, MANUAL_PROMOTE)
AUTOMATIC_ACTIONS = (PROMOTED, KEPT_INCUMBENT, NO_CHAMPION, RETIRED_INCUMBENT)
"""Actions of ``judge.decide``; one such row per (symbol, as-of), replaced on re-run.
``RETIRED_INCUMBENT``: the incumbent's forward record failed its floor and no candidate
replaced it, so the symbol goes flat."""

DECISION_KEY = "_decision"
"""Key of ``Decision.gate_reports`` holding what concerns the whole decision (trial count,
thresholds, the incumbent's forward record and floors); every other key is a family."""


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
    """One family's model of a (symbol, as-of), judged by its family's record.

    ``metrics`` is the record's summary (``FamilyRecord.summary`` plus the deflated Sharpe
    and the paired comparison), as recorded in the decision.
    """

    family: str
    as_of: pd.Timestamp
    version: str
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", utc(self.as_of))


@dataclass(frozen=True)
class Decision:
    """What ``judge.decide`` (or ``promotion.rollback`` / ``promotion.promote_manual``)
    decided, and why.

    ``champion`` is the champion after the decision (None: the symbol has none),
    ``previous`` the one before it (the incumbent). ``gate_reports`` is the JSON record
    written to ``registry.promotions``: per candidate family its gate report, record and
    paired comparison, and under :data:`DECISION_KEY` the trial count, thresholds and the
    incumbent's judgement. ``incumbent_report`` holds the incumbent's floors when it was
    judged (None: no incumbent, or its forward record is still too short).
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
    incumbent_report: GateReport | None = None

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
