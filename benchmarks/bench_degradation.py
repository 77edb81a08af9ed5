"""Error rates of the degradation detector: how often does the REAL ``detect`` fire on a live
record that performs exactly as its backtest promised, and how soon does it notice an edge
that vanished or flipped?

Simulated hourly live records (8760 bars a year): per-bar net returns with Student-t shocks
(df = 4, scaled to 0.6 % hourly volatility, deterministic seeds) around a mean that gives
an annualized Sharpe of 2, 3 or 5. The expectation is the truth the record is drawn from
(``Expectation.from_annual``: mean and std as promised) with the max drawdown of a
simulated 180-day backtest of the same process (one per record, as a promotion would have
measured it), so the drawdown floor varies as it would in production.

* as promised: mean = backtest mean for 90 days; false alarm = fired within 720 bars
  (30 days), and within 2160 bars (90 days: the CUSUM has warmed up by then, so alarms
  come faster per day than in the first month);
* edge vanished / flipped at bar 240: mean = backtest mean for 240 bars, then 0 or
  -backtest mean for 480 bars. Records that fired before the change are counted as
  pre-change alarms and left out of the delay; detection = fired within the 480 bars after
  the change; delays are in bars after the change, undetected records counted as > 480
  (a quantile that lands there prints as "> 480"); "mean delay" caps them at 480, so it
  is always defined and the CUSUM/baseline ratio is too.

Baseline, measured on the same records in the same run: the drawdown rule alone (``detect``
with the CUSUM switched off by an unreachable threshold), i.e. the configured floor
``max(drawdown_multiple × |backtest max drawdown|, min_drawdown)``. The CUSUM threshold's
sensitivity is listed for a few values next to the default.

    python benchmarks/bench_degradation.py            # 2000 records per cell, ~1 min
    CLM_DEGRADATION_RECORDS=300 python benchmarks/bench_degradation.py
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from clm_assets.backtest.metrics import max_drawdown_of
from clm_assets.monitoring.degradation import DetectorConfig, Expectation, detect

SHARPES = (2.0, 3.0, 5.0)
SCENARIOS = ("vanished", "flipped")
BARS_PER_YEAR = 8760
HOURLY_VOL, DF = 0.006, 4
MONTH, QUARTER, CHANGE_AT = 720, 2160, 240
AFTER = MONTH - CHANGE_AT
BACKTEST_BARS = 180 * 24
RECORDS = int(os.environ.get("CLM_DEGRADATION_RECORDS", "2000"))
THRESHOLDS = (40.0, 50.0)
"""CUSUM thresholds of the sensitivity table (the default is measured on its own)."""
CUSUM_OFF = 1e300
"""A threshold no CUSUM reaches: ``detect`` then acts as the drawdown-only baseline."""
START = pd.Timestamp("2025-01-01", tz="UTC")
TIMES = pd.date_range(START, periods=QUARTER, freq="1h")
TARGETS = [
    ("false alarm within 30 days, as promised, default config (worst Sharpe)",
     "false_alarm_720_worst", "<=", 0.05),
    ("flip detected within 480 bars, Sharpe 5, default config", "detected_5_flipped", ">=", 0.45),
]  # fmt: skip


def shocks(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t (df 4) shocks with unit variance (a t4 has variance df / (df - 2) = 2)."""
    return rng.standard_t(DF, shape) / np.sqrt(DF / (DF - 2))


def expectations(rng: np.random.Generator, sharpe: float) -> list[Expectation]:
    """One per record: the true mean and std, and the max drawdown of a 180-day backtest."""
    vol = HOURLY_VOL * np.sqrt(BARS_PER_YEAR)
    mean = sharpe / np.sqrt(BARS_PER_YEAR) * HOURLY_VOL
    backtests = mean + HOURLY_VOL * shocks(rng, (RECORDS, BACKTEST_BARS))
    return [
        Expectation.from_annual(sharpe, vol, max_drawdown_of(bt), BARS_PER_YEAR, f"sim-{i}")
        for i, bt in enumerate(backtests)
    ]


def first_alarm(record: np.ndarray, expectation: Expectation, config: DetectorConfig) -> int:
    """Index of the bar where ``detect`` fires on ``record``, or ``len(record)``."""
    verdict = detect(pd.Series(record, index=TIMES[: len(record)]), expectation, config)
    return verdict.bars - 1 if verdict.fired else len(record)


def delays(alarms: np.ndarray) -> dict[str, float | None]:
    """Pre-change alarm rate, detection within ``AFTER`` bars and the delay quantiles (None:
    beyond ``AFTER``) of alarm bars ``alarms`` for a change at ``CHANGE_AT``."""
    pre = alarms < CHANGE_AT
    delay = (alarms[~pre] - CHANGE_AT).astype(float)
    delay[delay >= AFTER] = np.inf
    if len(delay) == 0:
        return {"pre": float(pre.mean()), "detected": None, "median": None, "p90": None,
                "mean_capped": None}  # fmt: skip
    q50, q90 = np.quantile(delay, [0.5, 0.9], method="higher")
    return {
        "pre": float(pre.mean()),
        "detected": float(np.isfinite(delay).mean()),
        "median": float(q50) if np.isfinite(q50) else None,
        "p90": float(q90) if np.isfinite(q90) else None,
        "mean_capped": float(np.minimum(delay, AFTER).mean()),
    }


def oracle_power(sharpe: float) -> float:
    """Analytic reference, not a measurement: the power of a one-sided 5 % z-test of
    "mean = backtest mean" that KNOWS the flip bar and sees all ``AFTER`` bars after it
    (Gaussian shocks): ``Φ(2 SR_bar √AFTER - 1.645)``. No detector that must also find the
    change bar can beat it, so it says how much a 480-bar window can reveal at all."""
    shift = 2 * sharpe / math.sqrt(BARS_PER_YEAR) * math.sqrt(AFTER)
    return 0.5 * (1 + math.erf((shift - 1.6448536269514722) / math.sqrt(2)))


def cell(sharpe: float, seed: int, config: DetectorConfig) -> dict:
    """Every measurement of one Sharpe level, the same records for every detector."""
    rng = np.random.default_rng(seed)
    exps = expectations(rng, sharpe)
    noise = HOURLY_VOL * shocks(rng, (RECORDS, QUARTER))
    mean = exps[0].mean
    means = {
        "promised": np.full(QUARTER, mean),
        "vanished": np.where(np.arange(MONTH) < CHANGE_AT, mean, 0.0),
        "flipped": np.where(np.arange(MONTH) < CHANGE_AT, mean, -mean),
    }
    detectors = {
        "default": config,
        "baseline": replace(config, threshold=CUSUM_OFF),
        **{f"h{h:g}": replace(config, threshold=h) for h in THRESHOLDS},
    }
    out: dict = {}
    for name, cfg in detectors.items():
        for scenario, mu in means.items():
            alarms = np.array(
                [first_alarm(mu + noise[i, : len(mu)], e, cfg) for i, e in enumerate(exps)]
            )
            if scenario == "promised":
                out[f"{name}_fa720"] = float((alarms < MONTH).mean())
                out[f"{name}_fa2160"] = float((alarms < QUARTER).mean())
            else:
                for key, value in delays(alarms).items():
                    out[f"{name}_{scenario}_{key}"] = value
    out["floor_median"] = float(np.median([config.drawdown_floor(e) for e in exps]))
    return out


def run() -> dict:
    started = time.perf_counter()
    config = DetectorConfig()
    out: dict = {"records_per_cell": RECORDS, "config": asdict(config)}
    for i, sharpe in enumerate(SHARPES):
        for key, value in cell(sharpe, 4000 + i, config).items():
            out[f"{key}_{sharpe:g}"] = value
    for s in SHARPES:
        out[f"oracle_flipped_{s:g}"] = oracle_power(s)
    out["false_alarm_720_worst"] = max(out[f"default_fa720_{s:g}"] for s in SHARPES)
    for s in SHARPES:
        for scenario in SCENARIOS:
            out[f"detected_{s:g}_{scenario}"] = out[f"default_{scenario}_detected_{s:g}"]
            cusum = out[f"default_{scenario}_mean_capped_{s:g}"]
            base = out[f"baseline_{scenario}_mean_capped_{s:g}"]
            out[f"delay_ratio_{s:g}_{scenario}"] = (
                cusum / base if cusum is not None and base else None
            )
    out["seconds"] = time.perf_counter() - started
    return out


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _bars(value: float | None) -> str:
    return f"> {AFTER}" if value is None else f"{value:.0f}"


def print_table(out: dict) -> None:
    c = out["config"]
    print(
        f"{out['records_per_cell']} records per cell, hourly bars, Student-t(4) shocks at "
        f"0.6 % hourly vol; default config: haircut {c['haircut']}, threshold "
        f"{c['threshold']:g}, k {c['k']:g}, clip {c['clip']:g}, min_bars {c['min_bars']}, "
        f"drawdown floor max({c['drawdown_multiple']:g} × |backtest max drawdown|, "
        f"{c['min_drawdown']:.0%}). Baseline: that drawdown floor alone, same records.\n"
    )
    print(
        "| Sharpe | median floor | detector | false alarm 30 d | false alarm 90 d | "
        "scenario (change at bar 240) | alarm before change | detected within 480 bars | "
        "median delay | p90 delay | mean delay (capped 480) | delay ratio vs baseline |"
    )
    print("|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for s in SHARPES:
        for name in ("default", "baseline"):
            for scenario in SCENARIOS:
                k = f"{name}_{scenario}"
                ratio = out[f"delay_ratio_{s:g}_{scenario}"] if name == "default" else 1.0
                print(
                    f"| {s:g} | {out[f'floor_median_{s:g}']:.1%} | "
                    f"{'CUSUM + floor' if name == 'default' else 'floor only'} | "
                    f"{_rate(out[f'{name}_fa720_{s:g}'])} | {_rate(out[f'{name}_fa2160_{s:g}'])} | "
                    f"{scenario} | {_rate(out[f'{k}_pre_{s:g}'])} | "
                    f"{_rate(out[f'{k}_detected_{s:g}'])} | {_bars(out[f'{k}_median_{s:g}'])} | "
                    f"{_bars(out[f'{k}_p90_{s:g}'])} | "
                    f"{_bars(out[f'{k}_mean_capped_{s:g}'])} | "
                    f"{'n/a' if ratio is None else f'{ratio:.2f}'} |"
                )
    print("\nCUSUM threshold sensitivity (other settings at their defaults):\n")
    head = " | ".join(f"FA 30 d / flip detected, Sharpe {s:g}" for s in SHARPES)
    print(f"| threshold | {head} |")
    print("|---:|" + "---:|" * len(SHARPES))
    rows = [(f"h{h:g}", f"{h:g}") for h in THRESHOLDS]
    rows.append(("default", f"{c['threshold']:g} (default)"))
    for name, label in rows:
        cells = " | ".join(
            f"{_rate(out[f'{name}_fa720_{s:g}'])} / {_rate(out[f'{name}_flipped_detected_{s:g}'])}"
            for s in SHARPES
        )
        print(f"| {label} | {cells} |")
    oracle = ", ".join(f"Sharpe {s:g}: {out[f'oracle_flipped_{s:g}']:.0%}" for s in SHARPES)
    print(
        "\nFor scale (analytic, not measured): a 5 % z-test that knows the flip bar and sees all"
        f" {AFTER} bars after it detects the flip with probability {oracle}."
    )
    print(f"\n({out['seconds']:.0f} s)")


if __name__ == "__main__":
    print_table(run())
