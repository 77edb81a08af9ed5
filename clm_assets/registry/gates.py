"""Promotion gates: the thresholds a family's out-of-sample record must clear to become
champion, and the floor an incumbent's forward record must stay above to stay champion.

Every gate is recorded with the value it compared, its threshold, the comparator and the
outcome, so a promotion, a refusal or a retirement can always be explained from what was
stored. This module holds the thresholds and the comparisons only; the statistics they
compare are computed by ``clm_assets.promotion.judge`` (which ``decide`` is).

Rules:

* A value that is missing, None, NaN or infinite is *not computable* and its gate FAILS:
  a gate never passes by default on a value it could not check.
* ``max_drawdown`` is compared as an absolute value with the positive ``Gates.max_drawdown``.
* The paired gate compares a candidate with an incumbent of ANOTHER family on the bars
  where both traded out of sample. It is recorded as passed, with the reason, when there is
  no incumbent (only flat is left to beat, which the DSR gate tests), when the incumbent is
  of the candidate's family (the procedure judged is the same one: a refresh) and when the
  incumbent was retired in the same decision.

Defaults come from the power study ``benchmarks/bench_power.py`` (README, "Promotion gates"):
with five no-edge families judged at every decision, a 180-day lookback and ``min_dsr``
0.90 promote one in 3.3 % of decisions (target <= 5 %), while a planted annualized Sharpe
of 3 is found in 35 % and of 5 in 85 % (0.95: 1.4 %, 24 %, 75 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from clm_assets.numbers import fmt_number

NOT_COMPUTABLE = "not computable"
NO_INCUMBENT = "no incumbent"
SAME_FAMILY = "same family as the incumbent (a refresh of the procedure that was judged)"
INCUMBENT_RETIRED = "the incumbent is retired in this decision"

GATE_NAMES: tuple[str, ...] = (
    "record_bars",
    "dsr",
    "max_drawdown",
    "trade_count",
    "paired_psr",
)
"""The gates of a candidate's report, in the order they are evaluated and recorded."""

RETIRE_GATE_NAMES: tuple[str, ...] = ("forward_psr", "forward_max_drawdown")
"""The floors of an incumbent's forward record; failing one retires it."""


@dataclass(frozen=True)
class Gates:
    """Promotion thresholds (config; ``resources/promotion.py`` sets them from ``CLM_GATE_*``).

    * ``lookback_days``: length of the family record judged, ``[E - lookback, E)``.
    * ``min_record_days``: the record must cover at least this many days of model-traded bars.
    * ``min_dsr``: Deflated Sharpe Ratio of the record, deflated for the families judged.
    * ``max_drawdown``: positive fraction compared with ``|max drawdown|`` of the record (and
      of the incumbent's forward record).
    * ``min_trades``: trades in the record.
    * ``min_paired_psr`` / ``min_paired_days``: PSR of the per-bar return differences
      candidate - incumbent against 0, over at least that many common days.
    * ``min_incumbent_days`` / ``retire_psr``: once the incumbent has traded that many days
      since its promotion, a PSR vs flat of its forward record at or below ``retire_psr``
      (significantly losing) retires it.
    """

    lookback_days: int = 180
    min_record_days: float = 90.0
    min_dsr: float = 0.90
    max_drawdown: float = 0.5
    min_trades: int = 10
    min_paired_psr: float = 0.5
    min_paired_days: float = 7.0
    min_incumbent_days: float = 14.0
    retire_psr: float = 0.05

    def __post_init__(self) -> None:
        for name in ("lookback_days", "min_trades"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        if self.lookback_days < 1:
            raise ValueError(f"lookback_days must be >= 1, got {self.lookback_days}")
        if self.min_record_days > self.lookback_days:
            raise ValueError(
                f"min_record_days ({self.min_record_days}) cannot exceed lookback_days "
                f"({self.lookback_days}): no record could ever be long enough"
            )
        if not 0.0 < self.max_drawdown <= 1.0:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown}")
        for name in ("min_dsr", "min_paired_psr", "retire_psr"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """One gate as decided: ``value comparator threshold`` → ``passed``.

    ``value`` is what was compared (``|max_drawdown|`` for the drawdown gates) or None when
    it could not be computed (then ``passed`` is False) or when the gate does not apply
    (then ``reason`` says why and ``passed`` is True).
    """

    name: str
    value: float | None
    threshold: float
    comparator: str
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateReport:
    """Every gate of one candidate (or of the incumbent's floors); ``passed`` only when all
    of them passed."""

    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.gates) and all(g.passed for g in self.gates)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gates if not g.passed)

    def gate(self, name: str) -> GateResult:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(f"no gate {name!r}; gates: {[g.name for g in self.gates]}")

    def summary(self) -> str:
        """One line: ``passed all gates`` or the failed gates with value and threshold."""
        if self.passed:
            return "passed all gates"
        return "failed " + "; ".join(g.reason for g in self.gates if not g.passed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (no NaN: values are finite floats or None)."""
        return {
            "passed": self.passed,
            "failed": list(self.failed),
            "gates": [g.as_dict() for g in self.gates],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        return cls(tuple(GateResult(**g) for g in data["gates"]))


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when finite, else None (None, NaN, inf, non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def compare(
    name: str, value: Any, threshold: float, comparator: str, *, why_none: str = NOT_COMPUTABLE
) -> GateResult:
    """``value comparator threshold``; a value that is not a finite number fails, with
    ``why_none`` as its reason."""
    number = finite_or_none(value)
    if number is None:
        return GateResult(name, None, float(threshold), comparator, False, f"{name}: {why_none}")
    if comparator == ">=":
        passed, opposite = number >= threshold, "<"
    elif comparator == "<=":
        passed, opposite = number <= threshold, ">"
    elif comparator == ">":
        passed, opposite = number > threshold, "<="
    else:
        raise ValueError(f"unknown comparator {comparator!r}; use '>=', '<=' or '>'")
    shown = comparator if passed else opposite
    return GateResult(
        name,
        number,
        float(threshold),
        comparator,
        bool(passed),
        f"{name} {fmt_number(number)} {shown} {fmt_number(threshold)}",
    )


def not_applicable(name: str, threshold: float, comparator: str, why: str) -> GateResult:
    """A gate that does not apply to this candidate, recorded as passed with the reason."""
    return GateResult(name, None, float(threshold), comparator, True, f"{name}: {why}")
