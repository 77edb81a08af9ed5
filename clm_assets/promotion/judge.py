"""The automatic promotion decision of one (symbol, as-of), from records: pure, nothing read
or written.

Each candidate family is judged by its own out-of-sample record (``record.FamilyRecord``):
long enough (``record_bars``), a Deflated Sharpe Ratio that corrects for the families
judged at this decision (``dsr``), drawdown and trade floors, and, against an incumbent of
another family, a paired test on the per-bar return differences over the bars both traded
out of sample (``paired_psr``). The incumbent is judged too, on its forward record since
its promotion: significantly losing, or past the drawdown floor, retires it.

Why the DSR's null variance is ``1 / (T - 1)`` (each record's own length) and not the
variance of the trials' Sharpes: with five families the cross-trial variance is an
estimate from five numbers, and a family with a real edge inflates it, raising the bar
exactly when something is there to find. The null variance is what the Sharpe estimates of
no-skill records scatter by; ``benchmarks/bench_power.py`` measures the resulting error
rates through this very function.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clm_assets.backtest.metrics import (
    deflated_sharpe_ratio,
    max_drawdown_of,
    probabilistic_sharpe_ratio,
)
from clm_assets.numbers import fmt_number
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry._db import json_safe, utc, utc_now
from clm_assets.registry.decisions import (
    DECISION_KEY,
    KEPT_INCUMBENT,
    NO_CHAMPION,
    PROMOTED,
    RETIRED_INCUMBENT,
    Candidate,
    ChampionRef,
    Decision,
    RegistryError,
)
from clm_assets.registry.gates import (
    INCUMBENT_RETIRED,
    NO_INCUMBENT,
    SAME_FAMILY,
    GateReport,
    GateResult,
    Gates,
    compare,
    finite_or_none,
    not_applicable,
)


@dataclass(frozen=True, eq=False)
class IncumbentRecord:
    """The incumbent re-scored from its stored bytes up to the decision's end.

    ``open_time``/``returns`` cover at least the bars it shares with the candidates' records
    and its forward record ``[promoted_at, E)``; ``promoted_at`` is the end of its as-of,
    the first moment it could trade as champion.
    """

    ref: ChampionRef
    promoted_at: pd.Timestamp
    open_time: pd.DatetimeIndex
    returns: np.ndarray
    bars_per_day: float

    def forward(self) -> np.ndarray:
        return self.returns[np.asarray(self.open_time >= self.promoted_at)]


@dataclass(frozen=True)
class Paired:
    """The paired comparison of a candidate's record with the incumbent on common bars."""

    bars: int
    psr: float | None
    mean_difference: float | None
    first_bar: pd.Timestamp | None
    last_bar: pd.Timestamp | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bars": self.bars,
            "psr": self.psr,
            "mean_difference": self.mean_difference,
            "first_bar": None if self.first_bar is None else self.first_bar.isoformat(),
            "last_bar": None if self.last_bar is None else self.last_bar.isoformat(),
        }


def paired(record: FamilyRecord, incumbent: IncumbentRecord) -> Paired:
    """PSR against 0 of ``d_t = r_candidate_t - r_incumbent_t`` over the bars of both.

    Defined whenever ``d`` varies, also when the incumbent is flat (constant returns, no
    Sharpe of its own): then ``d`` is the candidate's returns less a constant.
    """
    inc = pd.Series(incumbent.returns, index=incumbent.open_time)
    mine = pd.Series(record.returns, index=record.open_time)
    common = mine.index.intersection(inc.index)
    if len(common) == 0:
        return Paired(0, None, None, None, None)
    d = mine.loc[common].to_numpy() - inc.loc[common].to_numpy()
    return Paired(
        len(common),
        probabilistic_sharpe_ratio(d, 0.0),
        float(d.mean()),
        common[0],
        common[-1],
    )


def judge_incumbent(incumbent: IncumbentRecord, gates: Gates) -> GateReport | None:
    """The incumbent's floors on its forward record, or None while it is shorter than
    ``min_incumbent_days``. Failing one retires it.

    A flat forward record (constant returns) has no PSR; it is not losing, so that floor is
    recorded as passed with the reason. Its drawdown is still checked.
    """
    fwd = incumbent.forward()
    if len(fwd) < gates.min_incumbent_days * incumbent.bars_per_day:
        return None
    psr = probabilistic_sharpe_ratio(fwd, 0.0)
    if psr is None:
        psr_gate = not_applicable(
            "forward_psr", gates.retire_psr, ">", "constant returns (flat): not losing"
        )
    else:
        psr_gate = compare("forward_psr", psr, gates.retire_psr, ">")
    drawdown = compare("forward_max_drawdown", abs(max_drawdown_of(fwd)), gates.max_drawdown, "<=")
    return GateReport((psr_gate, drawdown))


def _gates_of(
    record: FamilyRecord,
    summary: dict[str, Any],
    dsr: float | None,
    pair: Paired | None,
    incumbent: IncumbentRecord | None,
    retired: bool,
    gates: Gates,
) -> GateReport:
    need = math.ceil(gates.min_record_days * record.bars_per_day)
    if record.covered_bars >= need:
        length = compare("record_bars", record.covered_bars, need, ">=")
    else:
        length = GateResult(
            "record_bars",
            float(record.covered_bars),
            float(need),
            ">=",
            False,
            f"insufficient record: {record.covered_bars} bars < {need}",
        )
    drawdown = abs(summary["max_drawdown"]) if len(record.returns) else None
    results = [
        length,
        compare("dsr", dsr, gates.min_dsr, ">="),
        compare("max_drawdown", drawdown, gates.max_drawdown, "<="),
        compare("trade_count", record.trade_count, gates.min_trades, ">="),
    ]
    if incumbent is None:
        results.append(not_applicable("paired_psr", gates.min_paired_psr, ">=", NO_INCUMBENT))
    elif incumbent.ref.family == record.family:
        results.append(not_applicable("paired_psr", gates.min_paired_psr, ">=", SAME_FAMILY))
    elif retired:
        results.append(not_applicable("paired_psr", gates.min_paired_psr, ">=", INCUMBENT_RETIRED))
    else:
        assert pair is not None
        common = math.ceil(gates.min_paired_days * record.bars_per_day)
        if pair.bars < common:
            results.append(
                GateResult(
                    "paired_psr",
                    None,
                    gates.min_paired_psr,
                    ">=",
                    False,
                    f"paired_psr: insufficient common bars with the incumbent: "
                    f"{pair.bars} < {common}",
                )
            )
        else:
            results.append(compare("paired_psr", pair.psr, gates.min_paired_psr, ">="))
    return GateReport(tuple(results))


def _check(
    symbol: str, as_of: pd.Timestamp, records: Sequence[FamilyRecord], incumbent: Any
) -> None:
    families = [r.family for r in records]
    if len(set(families)) != len(families):
        raise RegistryError(f"duplicate candidate families for {symbol} {as_of}: {families}")
    for r in records:
        if r.as_of != as_of or r.symbol != symbol:
            raise RegistryError(
                f"record of {r.family} is for {r.symbol} {r.as_of}, the decision for "
                f"{symbol} {as_of}"
            )
    if incumbent is None:
        return
    ref = incumbent.ref
    if ref.symbol != symbol:
        raise RegistryError(f"incumbent {ref.label} is of {ref.symbol}, not {symbol}")
    if any(ref.family == r.family and ref.as_of == as_of for r in records):
        raise RegistryError(
            f"the incumbent {ref.label} is one of the candidates of this as-of: decide "
            "against the champion before this as-of (incumbent_for(conn, symbol, as_of) "
            "gives it after an automatic decision; after a manual promotion or a rollback to "
            "a model of this as-of, roll back first)"
        )


def decide(
    symbol: str,
    as_of: Any,
    records: Sequence[FamilyRecord],
    incumbent: IncumbentRecord | None,
    gates: Gates,
    *,
    missing: Sequence[str] = (),
    made_with: Mapping[str, Any] | None = None,
) -> Decision:
    """Gate every family's record, judge the incumbent, pick the champion of
    (``symbol``, ``as_of``).

    Trial count N = families whose record has a Sharpe (>= 2 bars), recorded. Eligible =
    passed every gate; the champion is the eligible one with the highest DSR, ties broken
    by family name. An eligible candidate replaces the incumbent (PROMOTED); otherwise a
    retired incumbent leaves the symbol flat (RETIRED_INCUMBENT), a standing one stays
    (KEPT_INCUMBENT), and without one the symbol has no champion (NO_CHAMPION).
    ``missing`` names families without an evaluation of this as-of (not candidates);
    ``made_with`` (costs, interval) is recorded beside the gates, so a decision can be
    recomputed from its row alone.
    """
    as_of = utc(as_of)
    _check(symbol, as_of, records, incumbent)
    trials = max(1, sum(len(r.returns) >= 2 for r in records))
    incumbent_report = None if incumbent is None else judge_incumbent(incumbent, gates)
    retired = incumbent_report is not None and not incumbent_report.passed

    dsr = {r.family: deflated_sharpe_ratio(r.returns, trials) for r in records}
    summaries = {r.family: r.summary() for r in records}
    pairs = {
        r.family: paired(r, incumbent)
        for r in records
        if incumbent is not None and incumbent.ref.family != r.family
    }
    reports = {
        r.family: _gates_of(
            r, summaries[r.family], dsr[r.family], pairs.get(r.family), incumbent, retired, gates
        )
        for r in records
    }
    eligible = sorted(
        (r for r in records if reports[r.family].passed),
        key=lambda r: (-(finite_or_none(dsr[r.family]) or 0.0), r.family),
    )
    rank = {r.family: i + 1 for i, r in enumerate(eligible)}
    candidates = tuple(
        Candidate(
            r.family,
            as_of,
            r.version,
            {
                **summaries[r.family],
                "dsr": dsr[r.family],
                "trials": trials,
                "paired": None if r.family not in pairs else pairs[r.family].as_dict(),
            },
        )
        for r in records
    )
    gate_reports: dict[str, Any] = {
        c.family: {
            "as_of": c.as_of,
            "version": c.version,
            "eligible": reports[c.family].passed,
            "rank": rank.get(c.family),
            "report": reports[c.family].as_dict(),
            "incumbent": None if incumbent is None else incumbent.ref.as_dict(),
            "metrics": dict(c.metrics),
        }
        for c in candidates
    }
    gate_reports[DECISION_KEY] = {
        **_decision_record(trials, gates, incumbent, incumbent_report, missing),
        **(made_with or {}),
    }

    where = f"{symbol} as of {as_of.isoformat()}"
    rejected = [
        f"{r.family} ({reports[r.family].summary()})" for r in records if not rank.get(r.family)
    ]
    tail = f" Rejected: {'; '.join(rejected)}." if rejected else ""
    if missing:
        tail += f" Not candidates (no evaluation for this partition): {', '.join(missing)}."
    inc_text = _incumbent_text(incumbent, incumbent_report, gates)
    champion: ChampionRef | None
    if eligible:
        best = eligible[0]
        action, champion = PROMOTED, ChampionRef(best.family, symbol, as_of, best.version)
        ranking = ", ".join(f"{r.family} dsr {fmt_number(dsr[r.family])}" for r in eligible)
        if incumbent is None:
            replaces = "first champion of the symbol"
        elif incumbent.ref.family == best.family:
            replaces = f"refreshes {incumbent.ref.label} ({SAME_FAMILY})"
        else:
            replaces = f"replaces {incumbent.ref.label}"
        reason = (
            f"{best.family} ({best.version}) promoted for {where}: its record passed all gates "
            f"with the highest DSR (N={trials} trials) of {len(eligible)} eligible "
            f"[{ranking}]; {replaces}.{inc_text}{tail}"
        )
    else:
        head = (
            f"no candidate passed all gates for {where}"
            if records
            else f"no candidate was evaluated for {where}"
        )
        if incumbent is None:
            action, champion = NO_CHAMPION, None
            result = f"no incumbent: {symbol} has no champion"
        elif retired:
            action, champion = RETIRED_INCUMBENT, None
            result = f"incumbent {incumbent.ref.label} RETIRED: {symbol} goes flat"
        else:
            action, champion = KEPT_INCUMBENT, incumbent.ref
            result = f"incumbent {incumbent.ref.label} stays champion"
        reason = f"{head}; {result}.{inc_text}{tail}"

    return Decision(
        decision_id=uuid.uuid4().hex,
        symbol=symbol,
        as_of=as_of,
        decided_at=utc_now(),
        action=action,
        champion=champion,
        previous=None if incumbent is None else incumbent.ref,
        reason=reason,
        reports=reports,
        candidates=candidates,
        gate_reports=json_safe(gate_reports),
        incumbent_report=incumbent_report,
    )


def _incumbent_text(
    incumbent: IncumbentRecord | None, report: GateReport | None, gates: Gates
) -> str:
    if incumbent is None:
        return ""
    days = len(incumbent.forward()) / incumbent.bars_per_day
    if report is None:
        return (
            f" Incumbent's forward record {days:.1f} days < {gates.min_incumbent_days:g}: "
            "not judged yet."
        )
    verdict = "held its floors" if report.passed else report.summary()
    return f" Incumbent's forward record ({days:.1f} days): {verdict}."


def _decision_record(
    trials: int,
    gates: Gates,
    incumbent: IncumbentRecord | None,
    report: GateReport | None,
    missing: Sequence[str],
) -> dict[str, Any]:
    inc: dict[str, Any] | None = None
    if incumbent is not None:
        fwd = incumbent.forward()
        inc = {
            **incumbent.ref.as_dict(),
            "promoted_at": incumbent.promoted_at.isoformat(),
            "rescored_bars": len(incumbent.returns),
            "rescored_first_bar": (
                incumbent.open_time[0].isoformat() if len(incumbent.open_time) else None
            ),
            "forward_bars": len(fwd),
            "forward_days": len(fwd) / incumbent.bars_per_day,
            "forward_psr": probabilistic_sharpe_ratio(fwd, 0.0),
            "forward_max_drawdown": max_drawdown_of(fwd),
            "forward_total_return": float(np.prod(1.0 + fwd) - 1.0),
            "judged": report is not None,
            "retired": report is not None and not report.passed,
            "report": None if report is None else report.as_dict(),
        }
    return {
        "trials": trials,
        "gates": gates.as_dict(),
        "incumbent": inc,
        "missing_families": list(missing),
    }
