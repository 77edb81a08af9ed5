"""Speed of ``run_backtest`` against a plain Python loop computing the same outputs.

``run(n_bars)`` times the vectorized engine on ``n_bars`` seeded random-walk bars with
random positions (best of 5 after one warm-up call), and a bar-by-bar Python loop (per-bar
returns, equity and the trade list) on 100k bars, best of 3, scaled linearly to
``n_bars``. The loop's results are checked against the engine's on those 100k bars, so the
two timings are of the same computation. ``python benchmarks/bench_backtest.py`` prints
a table.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import numpy as np
import pandas as pd

from clm_assets.backtest.engine import run_backtest

FEE_BPS = 10.0
LOOP_BARS = 100_000


TARGETS = [
    ("1M bars in <= 0.05 s on one core", "engine_s", "<=", 0.05),
    ("engine equals the bar-by-bar loop", "loop_vs_engine_max_abs_diff", "<=", 1e-12),
]


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls: the least disturbed by the rest of the machine."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def synthetic_inputs(
    n: int, seed: int = 0
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random-walk bars and random targets in runs of 8 (also ``bench_vectorbt``'s)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.0005, n))
    # runs of equal targets (a model's sign/size rarely changes every bar)
    position = np.repeat(np.round(rng.uniform(-1, 1, n // 8 + 1) * 2) / 2, 8)[:n]
    times = pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC")
    return times, open_, close, position


def python_loop(
    open_: np.ndarray, close: np.ndarray, position: np.ndarray, fee_bps: float
) -> tuple[list[float], list[float], list[list]]:
    """Per-bar returns, equity and closed/open trades, one bar at a time, in units and cash.

    At each open the holding is traded to the target fraction of the equity left after the
    order's cost (closed form of ``y = w * (E - c * |y - x|)``); a trade that ends sells
    the whole holding first.
    """
    c = fee_bps / 10_000.0
    o, cl, w = open_.tolist(), close.tolist(), position.tolist()
    returns, equity_curve, trades = [], [], []
    units, cash, last_close, trade = 0.0, 1.0, 1.0, None
    for k in range(1, len(o)):
        price, target = o[k], w[k - 1]
        side = (target > 0) - (target < 0)
        if trade is not None and side != trade[0]:
            cash += units * price - c * abs(units) * price
            units = 0.0
            trade[3] = cash / trade[3]
            trades.append(trade)
            trade = None
        equity = cash + units * price
        if trade is None and side != 0:
            trade = [side, k, 0, equity]
        held = units * price
        if target * equity >= held:
            notional = target * (equity + c * held) / (1.0 + c * target)
        else:
            notional = target * (equity - c * held) / (1.0 - c * target)
        cash -= notional - held + c * abs(notional - held)
        units = notional / price
        marked = cash + units * cl[k]
        if trade is not None:
            trade[2] += 1
        returns.append(marked / last_close - 1.0)
        equity_curve.append(marked)
        last_close = marked
    if trade is not None:
        trade[3] = last_close / trade[3]
        trades.append(trade)
    return returns, equity_curve, trades


def run(n_bars: int = 1_000_000) -> dict:
    times, open_, close, position = synthetic_inputs(n_bars)
    run_backtest(times, open_, close, position, fee_bps=FEE_BPS)  # warm-up
    engine_s = best(lambda: run_backtest(times, open_, close, position, fee_bps=FEE_BPS), 5)
    result = run_backtest(times, open_, close, position, fee_bps=FEE_BPS)

    m = min(LOOP_BARS, n_bars)
    small = run_backtest(times[:m], open_[:m], close[:m], position[:m], fee_bps=FEE_BPS)
    loop_returns, loop_equity, loop_trades = python_loop(
        open_[:m], close[:m], position[:m], FEE_BPS
    )
    max_diff = max(
        float(np.max(np.abs(small.returns - np.asarray(loop_returns)))),
        float(np.max(np.abs(small.equity - np.asarray(loop_equity)))),
        float(np.max(np.abs(small.trades["return"] - [t[3] - 1.0 for t in loop_trades]))),
    )
    if len(loop_trades) != len(small.trades) or max_diff > 1e-9:
        raise AssertionError(f"loop and engine disagree (max |diff| {max_diff:.3g})")
    loop_s = best(lambda: python_loop(open_[:m], close[:m], position[:m], FEE_BPS), 3)
    loop_scaled_s = loop_s * n_bars / m
    return {
        "n_bars": n_bars,
        "trades": len(result.trades),
        "engine_s": engine_s,
        "engine_bars_per_s": n_bars / engine_s,
        "loop_bars": m,
        "loop_s": loop_s,
        "loop_scaled_s": loop_scaled_s,
        "speedup": loop_scaled_s / engine_s,
        "loop_vs_engine_max_abs_diff": max_diff,
    }


def _print_table(res: dict) -> None:
    n = res["n_bars"]
    print(f"backtest of {n:,} bars, {res['trades']:,} trades, fee {FEE_BPS:g} bps")
    print(f"{'method':<40}{'seconds':>10}{'bars/s':>14}")
    print(
        f"{'vectorized engine (best of 5)':<40}{res['engine_s']:>10.4f}"
        f"{res['engine_bars_per_s']:>14,.0f}"
    )
    label = f"python loop ({res['loop_bars']:,} bars, best of 3)"
    print(f"{label:<40}{res['loop_s']:>10.4f}{res['loop_bars'] / res['loop_s']:>14,.0f}")
    print(f"{'python loop scaled to ' + format(n, ','):<40}{res['loop_scaled_s']:>10.4f}")
    print(
        f"speedup {res['speedup']:.1f}x; loop vs engine max |diff| "
        f"{res['loop_vs_engine_max_abs_diff']:.2e}"
    )


if __name__ == "__main__":
    _print_table(run())
