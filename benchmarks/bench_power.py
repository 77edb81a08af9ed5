"""Power study of the promotion gates: how often does the REAL decision code promote a
family without an edge, and how often does it find a planted one?

Simulated per-bar hourly returns (Student-t shocks, df = 4, scaled to 0.6 % hourly
volatility; deterministic seeds) for five families judged together at every decision, as
``promotion/promoted_model`` judges them. Null: every family has mean 0. Planted edge: one
family's mean gives an annualized Sharpe of 1, 2, 3 or 5 (8760 bars a year). Each record is
a ``FamilyRecord`` as ``promotion.record.stitch_record`` builds it (covering the whole
lookback, a trade every 12 bars) and goes through ``promotion.judge.decide`` with the
default gates, the lookback of the row (``min_record_days`` capped at it).

* false promotion = decisions of five null families that promoted any of them;
* true promotion = decisions with one edged family that promoted that family.

The incumbent's retire rule (``judge.judge_incumbent``) is measured the same way on
forward records of a no-edge and an edged incumbent.

    python benchmarks/bench_power.py            # ~1000 decisions per cell
    CLM_POWER_DECISIONS=200 python benchmarks/bench_power.py
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from clm_assets.promotion.judge import IncumbentRecord, decide, judge_incumbent
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry.decisions import ChampionRef
from clm_assets.registry.gates import Gates

FAMILIES = ("f1", "f2", "f3", "f4", "f5")
EDGED = "f1"
LOOKBACKS = (30, 60, 90, 180)
EDGES = (1.0, 2.0, 3.0, 5.0)
BARS_PER_DAY, BARS_PER_YEAR = 24, 8760
HOURLY_VOL, DF = 0.006, 4
TRADE_EVERY = 12
DECISIONS = int(os.environ.get("CLM_POWER_DECISIONS", "1000"))
AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
TARGETS = [
    ("false promotion per decision at the default lookback", "false_at_default", "<=", 0.05),
]


def shocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Student-t (df 4) shocks with unit variance (a t4 has variance df / (df - 2) = 2)."""
    return rng.standard_t(DF, n) / np.sqrt(DF / (DF - 2))


def returns(rng: np.random.Generator, n: int, sharpe: float) -> np.ndarray:
    mean = sharpe / np.sqrt(BARS_PER_YEAR) * HOURLY_VOL
    return mean + HOURLY_VOL * shocks(rng, n)


def record(family: str, r: np.ndarray, times: pd.DatetimeIndex) -> FamilyRecord:
    return FamilyRecord(
        family=family,
        symbol="SIM",
        as_of=AS_OF,
        version=f"{family}-v",
        window_start=times[0],
        window_end=times[-1] + pd.Timedelta(hours=1),
        open_time=times,
        returns=r,
        trade_count=len(r) // TRADE_EVERY,
        covered_bars=len(r),
        segments=(),
        bars_per_day=BARS_PER_DAY,
    )


THRESHOLDS = (0.90, 0.95, 0.99)
"""``min_dsr`` values compared: one run of ``decide`` with ``min_dsr = 0`` gives each
family's DSR and every other gate's outcome; the champion under a threshold is the family
with the highest DSR among those passing the other gates, if that DSR clears it (``decide``
ranks eligible families by DSR, so this is exactly what it would promote)."""


def gates_for(days: int) -> Gates:
    base = Gates()
    return replace(
        base, lookback_days=days, min_record_days=min(base.min_record_days, days), min_dsr=0.0
    )


def cell(days: int, edge: float | None, seed: int) -> dict[float, float]:
    """Per threshold, the share of decisions promoting (edge None: any family; else the
    edged one)."""
    rng = np.random.default_rng(seed)
    gates, n = gates_for(days), days * BARS_PER_DAY
    hits = dict.fromkeys(THRESHOLDS, 0)
    end = AS_OF + pd.Timedelta(days=1)
    times = pd.date_range(end - pd.Timedelta(days=days), end, freq="1h", inclusive="left")
    for _ in range(DECISIONS):
        records = [
            record(f, returns(rng, n, edge if (edge and f == EDGED) else 0.0), times)
            for f in FAMILIES
        ]
        d = decide("SIM", AS_OF, records, None, gates)
        passing = {
            f: rep.gate("dsr").value
            for f, rep in d.reports.items()
            if all(g.passed for g in rep.gates if g.name != "dsr") and rep.gate("dsr").value
        }
        if not passing:
            continue
        best = max(sorted(passing), key=lambda f: passing[f])
        for thr in THRESHOLDS:
            if passing[best] >= thr and (edge is None or best == EDGED):
                hits[thr] += 1
    return {thr: h / DECISIONS for thr, h in hits.items()}


def retire_rate(days: int, sharpe: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    gates, n, retired = Gates(), days * BARS_PER_DAY, 0
    ref = ChampionRef("f1", "SIM", AS_OF, "v")
    times = pd.date_range(AS_OF, periods=n, freq="1h")
    for _ in range(DECISIONS):
        inc = IncumbentRecord(ref, AS_OF, times, returns(rng, n, sharpe), BARS_PER_DAY)
        report = judge_incumbent(inc, gates)
        retired += report is not None and not report.passed
    return retired / DECISIONS


def run() -> dict:
    started = time.perf_counter()
    out: dict = {"decisions_per_cell": DECISIONS, "gates": Gates().as_dict()}
    chosen = Gates().min_dsr
    for i, days in enumerate(LOOKBACKS):
        for thr, rate in cell(days, None, 1000 + i).items():
            out[f"false_{days}_{thr:g}"] = rate
        for j, edge in enumerate(EDGES):
            for thr, rate in cell(days, edge, 2000 + 10 * i + j).items():
                out[f"true_{days}_{edge:g}_{thr:g}"] = rate
    for days in LOOKBACKS:
        out[f"false_{days}"] = out[f"false_{days}_{chosen:g}"]
    for i, days in enumerate((14, 30, 90)):
        for j, sharpe in enumerate((0.0, 2.0)):
            out[f"retire_{days}_{sharpe:g}"] = retire_rate(days, sharpe, 3000 + 10 * i + j)
    default = Gates().lookback_days
    out["false_at_default"] = out[f"false_{default}"] if default in LOOKBACKS else None
    out["seconds"] = time.perf_counter() - started
    return out


def print_table(out: dict) -> None:
    g = out["gates"]
    print(
        f"{out['decisions_per_cell']} decisions per cell, 5 families, Student-t(4) shocks, "
        f"0.6 % hourly vol, a trade every {TRADE_EVERY} bars; other gates at their defaults "
        f"(max_drawdown {g['max_drawdown']}, min_trades {g['min_trades']}, min_record_days "
        f"min({g['min_record_days']:g}, lookback)); default min_dsr {g['min_dsr']}, "
        f"lookback_days {g['lookback_days']}\n"
    )
    head = "| lookback (days) | min_dsr | false promotion (5 null families) | "
    head += " | ".join(f"true, Sharpe {e:g}" for e in EDGES) + " |"
    print(head)
    print("|---:|---:|---:|" + "---:|" * len(EDGES))
    for days in LOOKBACKS:
        for thr in THRESHOLDS:
            cells = " | ".join(f"{out[f'true_{days}_{e:g}_{thr:g}']:.1%}" for e in EDGES)
            print(f"| {days} | {thr:g} | {out[f'false_{days}_{thr:g}']:.1%} | {cells} |")
    print(
        f"\nIncumbent retire rule (retire_psr {g['retire_psr']}, max_drawdown "
        f"{g['max_drawdown']}), share of decisions retiring it:\n"
    )
    print("| forward record (days) | no-edge incumbent | Sharpe-2 incumbent |")
    print("|---:|---:|---:|")
    for days in (14, 30, 90):
        print(f"| {days} | {out[f'retire_{days}_0']:.1%} | {out[f'retire_{days}_2']:.1%} |")
    print(f"\n({out['seconds']:.0f} s)")


if __name__ == "__main__":
    print_table(run())
