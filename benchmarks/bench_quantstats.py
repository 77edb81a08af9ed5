"""Every metric ``clm_assets.backtest.metrics`` reports, next to ``quantstats.stats`` on the
same returns: both values, their difference, and the time of each side.

The returns are a real backtest's: the bundled BTC-USD hourly candles of 2018 (8,760
bars, so 8,759 result bars), target = sign of the 24-bar return decided at each close
(long/short, flat for the first 24 bars), fee 10 bps, ``run_backtest``; annualized with
``periods = 8760``. quantstats gets the net returns as a ``Series`` on the bars' open times,
as ``return_metrics`` builds it.

Each row is one clm metric, with the quantstats function that computes the same thing and
its status:

* ``delegates``: clm calls that quantstats function itself (its wrapping only maps
  undefined values to None), so the two must be bit-equal;
* ``own``: clm computes it itself (numpy or scipy) with quantstats' convention; equal up to
  rounding (target: relative difference <= 1e-12);
* ``differs``: a deliberate difference, with the reason in the row (PSR: clm uses the
  paper's sample moments, quantstats pandas' bias-corrected ones, and clm's
  ``moments="unbiased"`` is shown to equal quantstats; exposure: clm counts bars HELD,
  quantstats bars with a non-zero RETURN, rounded up to a whole percent);
* ``none``: quantstats has no such statistic (it knows no trades or positions; the DSR's
  selection-bias correction is not in it).

The prediction metrics (accuracy, F1, MAE, ...) compare scores with labels; quantstats has
nothing of the kind, so they are not rows. Times are best of ``repeats`` (20) of each side
on the same inputs; ``return_metrics`` (all ten return metrics, with its input checks and
Series construction) is timed against the quantstats calls giving the same ten numbers on
a prebuilt Series. ``python benchmarks/bench_quantstats.py`` prints a table.
"""

from __future__ import annotations

import logging
import math
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clm_assets.backtest import metrics as M
from clm_assets.backtest.engine import run_backtest
from clm_assets.sources.sample import SampleSource

START, END = pd.Timestamp("2018-01-01", tz="UTC"), pd.Timestamp("2019-01-01", tz="UTC")
PERIODS = 8760.0
FEE_BPS = 10.0
N_TRIALS = 5  # the DSR's trials: the five model families judged together

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
import quantstats.stats as qs  # noqa: E402 (after silencing matplotlib's font noise)

TARGETS = [
    ("delegated/own metrics equal quantstats (max rel diff)", "max_rel_diff_equal", "<=", 1e-12),
    ("clm PSR(unbiased) equals quantstats' PSR (rel diff)", "psr_unbiased_rel_diff", "<=", 1e-12),
    ("return_metrics time / quantstats calls time", "clm_vs_quantstats", "<=", 1.5),
]


@dataclass(frozen=True)
class Inputs:
    r: np.ndarray
    s: pd.Series
    table: dict[str, float | None]
    """``strategy_metrics`` of the backtest: what clm reports (``return_metrics`` inside)."""


@dataclass(frozen=True)
class Row:
    metric: str
    qs_name: str
    status: str
    clm: Callable[[Inputs], Any]
    theirs: Callable[[pd.Series], Any] | None
    why: str = ""
    timed: bool = False
    """clm's value comes from a function of its own, timed next to quantstats'."""


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls: the least disturbed by the rest of the machine."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def _reported(key: str) -> Callable[[Inputs], Any]:
    return lambda x: x.table[key]


ROWS = (
    Row("total_return", "comp", "own", _reported("total_return"), qs.comp),
    Row("cagr", "cagr", "delegates", _reported("cagr"), lambda s: qs.cagr(s, periods=PERIODS)),
    Row("sharpe", "sharpe", "delegates", _reported("sharpe"),
        lambda s: qs.sharpe(s, periods=PERIODS)),
    Row("sortino", "sortino", "delegates", _reported("sortino"),
        lambda s: qs.sortino(s, periods=PERIODS)),
    Row("volatility", "volatility", "delegates", _reported("volatility"),
        lambda s: qs.volatility(s, periods=PERIODS)),
    Row("max_drawdown", "max_drawdown", "delegates", _reported("max_drawdown"), qs.max_drawdown),
    Row("max_drawdown_of (numpy; degradation, power)", "max_drawdown", "own",
        lambda x: M.max_drawdown_of(x.r), qs.max_drawdown, timed=True),
    Row("win_rate", "win_rate", "delegates", _reported("win_rate"), qs.win_rate),
    Row("profit_factor", "profit_factor", "delegates", _reported("profit_factor"),
        qs.profit_factor),
    Row("per_bar_sharpe (SR* of psr_vs_incumbent)", "sharpe(annualize=False)", "own",
        lambda x: M.per_bar_sharpe(x.r), lambda s: qs.sharpe(s, annualize=False), timed=True),
    Row("psr", "probabilistic_sharpe_ratio", "differs", _reported("psr"),
        qs.probabilistic_sharpe_ratio,
        "sample moments (the paper) vs pandas' bias-corrected skew/kurt"),
    Row("psr, moments='unbiased'", "probabilistic_sharpe_ratio", "own",
        lambda x: M.probabilistic_sharpe_ratio(x.r, moments="unbiased"),
        qs.probabilistic_sharpe_ratio, timed=True),
    Row("exposure", "exposure", "differs", _reported("exposure"), qs.exposure,
        "bars held vs bars with a non-zero return, rounded up to 1 %"),
    Row("deflated_sharpe_ratio (5 trials)", "-", "none",
        lambda x: M.deflated_sharpe_ratio(x.r, N_TRIALS), None,
        "no multiple-testing correction", timed=True),
    Row("turnover", "-", "none", _reported("turnover"), None, "quantstats sees returns only"),
    Row("trade_count", "-", "none", _reported("trade_count"), None, "no trades in quantstats"),
    Row("avg_trade_return", "-", "none", _reported("avg_trade_return"), None,
        "no trades in quantstats"),
)  # fmt: skip
"""Rows marked ``delegates`` are values ``return_metrics`` gets from exactly that call."""

QS_BUNDLE: tuple[Callable[[pd.Series], Any], ...] = (
    qs.comp,
    lambda s: qs.cagr(s, periods=PERIODS),
    lambda s: qs.sharpe(s, periods=PERIODS),
    lambda s: qs.sortino(s, periods=PERIODS),
    lambda s: qs.volatility(s, periods=PERIODS),
    qs.max_drawdown,
    qs.win_rate,
    qs.profit_factor,
    qs.probabilistic_sharpe_ratio,
)
"""The quantstats calls that give ``return_metrics``' ten numbers (n_bars is ``len``)."""


def backtest() -> Inputs:
    bars = SampleSource().fetch("BTC-USD", "1h", START, END)
    close = bars["close"].to_numpy()
    momentum = np.zeros(len(close))
    momentum[24:] = np.sign(close[24:] / close[:-24] - 1.0)
    result = run_backtest(bars.open_time, bars.open, bars.close, momentum, fee_bps=FEE_BPS)
    r = result.returns
    table = M.strategy_metrics(result, PERIODS)
    return Inputs(r, pd.Series(r, index=result.open_time), table)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def run(repeats: int = 20) -> dict:
    x = backtest()
    rows = []
    for row in ROWS:
        clm = row.clm(x)
        theirs = None if row.theirs is None else float(row.theirs(x.s))
        clm_s = best(lambda f=row.clm: f(x), repeats) if row.timed else None
        qs_s = None if row.theirs is None else best(lambda f=row.theirs: f(x.s), repeats)
        rows.append(
            {
                "metric": row.metric,
                "quantstats": row.qs_name,
                "status": row.status,
                "why": row.why,
                "clm": clm,
                "theirs": theirs,
                "abs_diff": None if theirs is None else abs(clm - theirs),
                "rel_diff": None if theirs is None else _rel(clm, theirs),
                "clm_s": clm_s,
                "theirs_s": qs_s,
            }
        )
    equal_rows = [r for r in rows if r["status"] in ("delegates", "own")]
    clm_total_s = best(lambda: M.return_metrics(x.r, x.s.index, PERIODS), repeats)
    qs_total_s = best(lambda: [f(x.s) for f in QS_BUNDLE], repeats)
    psr_unbiased = next(r for r in rows if r["metric"] == "psr, moments='unbiased'")
    return {
        "bars": len(x.r),
        "rows": rows,
        "max_rel_diff_equal": max(r["rel_diff"] for r in equal_rows),
        "psr_unbiased_rel_diff": psr_unbiased["rel_diff"],
        "return_metrics_s": clm_total_s,
        "quantstats_calls_s": qs_total_s,
        "clm_vs_quantstats": clm_total_s / qs_total_s,
        "repeats": repeats,
    }


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_table(r: dict) -> None:
    print(
        f"metrics of a real backtest ({r['bars']:,} hourly BTC-USD bars of 2018, 24-bar "
        f"momentum sign, 10 bps), clm vs quantstats.stats, periods 8760; times best of "
        f"{r['repeats']}"
    )
    head = f"{'clm metric':<46}{'quantstats':<28}{'clm':>14}{'quantstats':>14}"
    print(f"{head}{'abs diff':>10}{'rel diff':>10}{'clm ms':>8}{'qs ms':>8}  status")
    for row in r["rows"]:
        clm_ms = None if row["clm_s"] is None else row["clm_s"] * 1000
        qs_ms = None if row["theirs_s"] is None else row["theirs_s"] * 1000
        print(
            f"{row['metric']:<46}{row['quantstats']:<28}{_num(row['clm'], '.8g'):>14}"
            f"{_num(row['theirs'], '.8g'):>14}{_num(row['abs_diff'], '.1e'):>10}"
            f"{_num(row['rel_diff'], '.1e'):>10}{_num(clm_ms, '.2f'):>8}{_num(qs_ms, '.2f'):>8}"
            f"  {row['status']}{': ' + row['why'] if row['why'] else ''}"
        )
    print(
        f"return_metrics (10 metrics, checks, Series) {r['return_metrics_s'] * 1000:.2f} ms vs "
        f"the {len(QS_BUNDLE)} quantstats calls {r['quantstats_calls_s'] * 1000:.2f} ms: "
        f"{r['clm_vs_quantstats']:.2f}x"
    )
    print("(clm ms only where clm computes the metric in a function of its own)")


if __name__ == "__main__":
    print_table(run())
