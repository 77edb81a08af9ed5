"""Promotion gates: the thresholds a candidate's backtest must clear to become champion.

Every gate is recorded with the value it compared, its threshold, the comparator and the
outcome, so a promotion or a refusal can always be explained from what was stored.

Rules:

* A metric that is missing, None, NaN or infinite is *not computable* and its gate FAILS.
  Metrics are None when they are undefined on the returns (``backtest.metrics``): a
  profit factor without a losing bar, a Sharpe of constant returns, ... A gate never
  passes by default on a value it could not check.
* ``max_drawdown`` is stored by the metrics as a negative fraction (``-0.18``); the gate
  compares its absolute value with the positive ``Gates.max_drawdown`` and records the
  absolute value it compared.
* Two PSR gates: ``psr_vs_flat`` (the metrics' ``psr``, benchmark Sharpe SR* = 0) and
  ``psr_vs_incumbent`` (SR* = the incumbent's per-bar Sharpe on the same evaluation window,
  computed by the caller). Without an incumbent the second gate is recorded as
  "no incumbent" and passes: the only thing left to beat is staying flat, which is exactly
  what ``psr_vs_flat`` already tests, so failing it would make a first champion impossible.
  With an incumbent, a None ``psr_vs_incumbent`` fails ("not computable").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

NOT_COMPUTABLE = "not computable"
NO_INCUMBENT = "no incumbent"

GATE_NAMES: tuple[str, ...] = (
    "trade_count",
    "sharpe",
    "max_drawdown",
    "profit_factor",
    "psr_vs_flat",
    "psr_vs_incumbent",
)
"""The gates of a report, in the order they are evaluated and recorded."""

METRIC_KEYS: dict[str, str] = {
    "trade_count": "trade_count",
    "sharpe": "sharpe",
    "max_drawdown": "max_drawdown",
    "profit_factor": "profit_factor",
    "psr_vs_flat": "psr",
}
"""The ``metrics_table`` key each metric gate reads (``psr_vs_incumbent`` is an argument)."""


@dataclass(frozen=True)
class Gates:
    """Promotion thresholds (config).

    ``min_sharpe`` is annualized (the metrics' ``sharpe``); ``max_drawdown`` is a positive
    fraction compared with ``|max_drawdown|``; ``min_psr`` applies to PSR vs flat and to PSR
    vs the incumbent.
    """

    min_trades: int = 10
    min_sharpe: float = 0.5
    max_drawdown: float = 0.25
    min_profit_factor: float = 1.05
    min_psr: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.min_trades, bool) or not isinstance(self.min_trades, int):
            raise ValueError(f"min_trades must be an int, got {self.min_trades!r}")
        if self.min_trades < 0:
            raise ValueError(f"min_trades must be >= 0, got {self.min_trades}")
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(float(value)):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
        if not 0.0 < self.max_drawdown <= 1.0:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown}")
        if not 0.0 <= self.min_psr <= 1.0:
            raise ValueError(f"min_psr is a probability in [0, 1], got {self.min_psr}")
        if self.min_profit_factor < 0:
            raise ValueError(f"min_profit_factor must be >= 0, got {self.min_profit_factor}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """One gate as decided: ``value comparator threshold`` → ``passed``.

    ``value`` is what was compared (``|max_drawdown|`` for the drawdown gate) or None when
    it could not be computed (then ``passed`` is False) or when there is no incumbent.
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
    """Every gate of one candidate; ``passed`` only when all of them passed."""

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


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _compare(name: str, value: float | None, threshold: float, comparator: str) -> GateResult:
    if value is None:
        return GateResult(name, None, threshold, comparator, False, f"{name}: {NOT_COMPUTABLE}")
    if comparator == ">=":
        passed, opposite = value >= threshold, "<"
    elif comparator == "<=":
        passed, opposite = value <= threshold, ">"
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown comparator {comparator!r}")
    shown = comparator if passed else opposite
    return GateResult(
        name,
        value,
        float(threshold),
        comparator,
        bool(passed),
        f"{name} {_fmt(value)} {shown} {_fmt(threshold)}",
    )


def evaluate(
    metrics: Mapping[str, Any],
    psr_vs_incumbent: float | None,
    has_incumbent: bool,
    gates: Gates,
) -> GateReport:
    """Check ``metrics`` (``backtest.metrics.metrics_table`` keys) against ``gates``.

    ``psr_vs_incumbent`` is the candidate's PSR with SR* = the incumbent's per-bar Sharpe on
    the same window; it is only read when ``has_incumbent``.
    """
    drawdown = finite_or_none(metrics.get(METRIC_KEYS["max_drawdown"]))
    results = [
        _compare(
            "trade_count",
            finite_or_none(metrics.get(METRIC_KEYS["trade_count"])),
            float(gates.min_trades),
            ">=",
        ),
        _compare(
            "sharpe", finite_or_none(metrics.get(METRIC_KEYS["sharpe"])), gates.min_sharpe, ">="
        ),
        _compare(
            "max_drawdown",
            None if drawdown is None else abs(drawdown),
            gates.max_drawdown,
            "<=",
        ),
        _compare(
            "profit_factor",
            finite_or_none(metrics.get(METRIC_KEYS["profit_factor"])),
            gates.min_profit_factor,
            ">=",
        ),
        _compare(
            "psr_vs_flat",
            finite_or_none(metrics.get(METRIC_KEYS["psr_vs_flat"])),
            gates.min_psr,
            ">=",
        ),
    ]
    if has_incumbent:
        results.append(
            _compare("psr_vs_incumbent", finite_or_none(psr_vs_incumbent), gates.min_psr, ">=")
        )
    else:
        # Nothing to beat but flat, which psr_vs_flat already gates (see module docstring).
        results.append(
            GateResult(
                "psr_vs_incumbent",
                None,
                float(gates.min_psr),
                ">=",
                True,
                f"psr_vs_incumbent: {NO_INCUMBENT}",
            )
        )
    return GateReport(tuple(results))
