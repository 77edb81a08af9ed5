"""``run_backtest`` against vectorbt on the same bars and the same targets: equal P&L, and
how long each takes.

``run(n_bars)`` uses ``bench_backtest``'s inputs (``n_bars`` seeded random-walk hourly
bars, random targets in {-1, -0.5, 0, 0.5, 1} held for runs of 8 bars), fee 10 bps,
slippage 0. The engine is timed as in ``bench_backtest`` (best of ``repeats`` after one
warm-up call). vectorbt 1.2 runs in its own virtualenv (``vectorbt_env``) through
``vectorbt_side.py``, which reads the inputs from a temp dir, times itself (best of
``repeats`` warm calls of ``from_orders`` + ``value()`` + ``returns()`` + position
records) and writes its outputs back; they are compared here.

How the engine's conventions map onto vectorbt (what makes the two equal):

* fills: the target decided at the close of bar ``t`` is filled at the open of bar
  ``t + 1`` in the engine; vectorbt gets the order on bar ``t + 1`` with ``price=open``.
* sizing: the engine's target is a fraction of the equity left AFTER the order's cost;
  vectorbt has no such size type (``targetpercent`` sizes on the value before fees), so
  each fill is given as a target amount of units, ``size_type="targetamount"``:
  ``units = held * E / open`` with ``E = equity / (1 + held * (close / open - 1))``, the
  engine's equity at that open after the cost. Orders only on bars where the engine
  traded (``turnover > 0``: a change of target or the rebalancing of a drifted short or
  fractional holding); NaN elsewhere, so both hold units between fills.
* costs: ``fees = (fee_bps + slippage_bps) / 10_000`` of the notional traded, paid in
  cash (vectorbt's ``slippage`` moves the fill price instead, so it stays 0);
  ``min_size=0``; partial fills refused and any rejected order raises.
* scale: vectorbt treats amounts within 1e-12 as zero, and random targets with no edge
  bleed costs (equity ~1e-74 after 1M bars); its account therefore starts at
  ``init_cash = S``, the smallest power of ten keeping its value >= 1, with the units
  scaled by ``S``. Compared: ``value[1:] / S`` with the engine's equity (relative
  difference; vectorbt's ``value[0]`` is the cash before the first fill) and
  ``returns[1:]`` with its per-bar returns (absolute difference), the final value, and
  vectorbt's position count with the engine's trade count.

Also reported, not a target: vectorbt's own ``targetpercent`` sizing of the same targets
(every bar, ``allow_partial``), which holds ``target * value / open`` units before the
fee and so a little more than the target after it; the final value's relative gap shows
what that convention difference is worth.

``python benchmarks/bench_vectorbt.py`` prints a table.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_backtest import synthetic_inputs
from vectorbt_env import python as vectorbt_python

from clm_assets.backtest.engine import BacktestResult, run_backtest

HERE = Path(__file__).resolve().parent
FEE_BPS, SLIPPAGE_BPS = 10.0, 0.0

TARGETS = [
    ("per-bar returns equal vectorbt's (max |diff|)", "returns_max_abs_diff", "<=", 1e-9),
    ("equity equals vectorbt's (max relative diff)", "equity_max_rel_diff", "<=", 1e-9),
    ("trade count equals vectorbt's position count", "trades_equal", "==", True),
    ("vectorbt time / engine time (warm)", "vectorbt_vs_engine", ">=", 1.0),
]


def target_units(result: BacktestResult) -> np.ndarray:
    """One target amount per input bar for ``targetamount``: NaN where the engine did not
    trade (bar 0 included), else the units it holds after that bar's open fill."""
    o, cl = result.bar_open[1:], result.bar_close[1:]
    after_cost = result.equity / (1.0 + result.position * (cl / o - 1.0))
    units = np.full(len(result.bar_open), np.nan)
    traded = result.turnover > 0
    units[1:][traded] = (result.position * after_cost / o)[traded]
    return units


def account_scale(equity: np.ndarray) -> float:
    """Smallest power of ten that keeps ``scale * equity`` >= 1 (and 1 at least)."""
    return 10.0 ** max(0, math.ceil(-math.log10(min(float(equity.min()), 1.0))))


def run_vectorbt(folder: Path, repeats: int) -> tuple[dict, dict]:
    done = subprocess.run(
        [str(vectorbt_python()), str(HERE / "vectorbt_side.py"), str(folder), str(repeats)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vectorbt_side.py failed:\n{done.stderr[-4000:]}")
    report = json.loads((folder / "vectorbt.json").read_text())
    return dict(np.load(folder / "vectorbt.npz")), report


def run(n_bars: int = 1_000_000, repeats: int = 5) -> dict:
    times, open_, close, position = synthetic_inputs(n_bars)
    costs = {"fee_bps": FEE_BPS, "slippage_bps": SLIPPAGE_BPS}
    run_backtest(times, open_, close, position, **costs)  # warm-up
    engine_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run_backtest(times, open_, close, position, **costs)
        engine_s.append(time.perf_counter() - t0)
    scale = account_scale(result.equity)
    units = target_units(result)
    t0 = time.perf_counter()
    vectorbt_python()  # created here on the first run, so its time is not a timing below
    venv_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench_vectorbt_"))
    try:
        np.savez(
            tmp / "inputs.npz",
            open=open_,
            close=close,
            units=units * scale,
            fraction=np.concatenate(([np.nan], position[:-1])),
            fees=(FEE_BPS + SLIPPAGE_BPS) / 10_000.0,
            init_cash=scale,
        )
        out, report = run_vectorbt(tmp, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    value = out["value"][1:] / scale
    percent = out["value_targetpercent"][1:] / scale
    simulate_s = report["simulate_s"]
    return {
        "n_bars": n_bars,
        "orders": int(np.isfinite(units).sum()),
        "trades": len(result.trades),
        "vectorbt_positions": report["positions"],
        "trades_equal": len(result.trades) == report["positions"],
        "init_cash": scale,
        "engine_min_equity": float(result.equity.min()),
        "engine_final": float(result.equity[-1]),
        "vectorbt_final": float(value[-1]),
        "final_rel_diff": abs(float(value[-1]) / float(result.equity[-1]) - 1.0),
        "equity_max_rel_diff": float(np.max(np.abs(value / result.equity - 1.0))),
        "returns_max_abs_diff": float(np.max(np.abs(out["returns"][1:] - result.returns))),
        "targetpercent_final_rel_diff": abs(float(percent[-1]) / float(result.equity[-1]) - 1),
        "engine_s": min(engine_s),
        "vectorbt_s": simulate_s,
        "vectorbt_from_orders_s": report["from_orders_s"],
        "vectorbt_first_call_s": report["first_call_s"],
        "vectorbt_import_s": report["import_s"],
        "vectorbt_vs_engine": simulate_s / min(engine_s),
        "repeats": repeats,
        "venv_setup_s": venv_s,
        "vectorbt_versions": report["versions"],
    }


def print_table(r: dict) -> None:
    print(
        f"backtest of {r['n_bars']:,} bars, {r['orders']:,} orders, {r['trades']:,} trades, "
        f"fee {FEE_BPS:g} bps; vectorbt {r['vectorbt_versions']['vectorbt']} (pandas "
        f"{r['vectorbt_versions']['pandas']}, numba {r['vectorbt_versions']['numba']}) "
        f"in its own venv"
    )
    print(f"{'side (best of ' + str(r['repeats']) + ', warm)':<58}{'seconds':>10}{'bars/s':>14}")
    rows = [
        ("clm run_backtest (targets -> returns, equity, trades)", r["engine_s"]),
        ("vectorbt from_orders + value + returns + positions", r["vectorbt_s"]),
        ("vectorbt from_orders alone", r["vectorbt_from_orders_s"]),
    ]
    for label, seconds in rows:
        print(f"{label:<58}{seconds:>10.4f}{r['n_bars'] / seconds:>14,.0f}")
    print(
        f"vectorbt / engine: {r['vectorbt_vs_engine']:.1f}x; vectorbt's first call in its "
        f"process {r['vectorbt_first_call_s']:.1f} s (numba compile or cache load), import "
        f"{r['vectorbt_import_s']:.1f} s; venv check/creation {r['venv_setup_s']:.1f} s"
    )
    print(
        f"equal P&L: per-bar returns max |diff| {r['returns_max_abs_diff']:.2e}, equity max "
        f"rel diff {r['equity_max_rel_diff']:.2e}, final {r['engine_final']:.6e} vs "
        f"{r['vectorbt_final']:.6e} (rel {r['final_rel_diff']:.2e}); trades "
        f"{r['trades']:,} vs vectorbt positions {r['vectorbt_positions']:,}"
    )
    print(
        f"account scale (vectorbt init_cash) {r['init_cash']:.0e}: the engine's equity falls "
        f"to {r['engine_min_equity']:.1e} (random targets, no edge, 10 bps)"
    )
    print(
        f"vectorbt's own targetpercent sizing (target x value before the fee): final value "
        f"off by {r['targetpercent_final_rel_diff']:.2e} relative (a convention, not an error)"
    )


if __name__ == "__main__":
    print_table(run())
