"""Promotion gates on metrics of real backtests: every gate enforced, None never passes."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.backtest.metrics import metrics_table
from clm_assets.registry.gates import (
    GATE_NAMES,
    NO_INCUMBENT,
    NOT_COMPUTABLE,
    GateReport,
    Gates,
    evaluate,
)

N_BARS = 600

# drift and volatility of the hourly log returns of each market
MARKETS: dict[str, tuple[float, float]] = {
    "strong": (0.0008, 0.005),
    "good": (0.0005, 0.005),
    "weak": (0.0002, 0.005),
    "noise": (0.0, 0.01),
}


@functools.cache
def _bars(market: str, seed: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Hourly bars whose log returns have exactly the market's drift and volatility."""
    mu, sigma = MARKETS[market]
    rng = np.random.default_rng(seed)
    z = rng.normal(size=N_BARS)
    z = (z - z.mean()) / z.std()
    close = 100.0 * np.exp(np.cumsum(mu + sigma * z))
    open_ = np.concatenate([[100.0], close[:-1]])
    times = pd.date_range("2024-03-01", periods=N_BARS, freq="1h", tz="UTC")
    return times, open_, close


def _positions(policy: str, seed: int) -> np.ndarray:
    if policy == "toggle":  # long, flat one bar in 25: 24 trades
        p = np.ones(N_BARS)
        p[::25] = 0.0
        return p
    if policy == "hold":  # one trade
        return np.ones(N_BARS)
    if policy == "zero":
        return np.zeros(N_BARS)
    if policy == "random":  # a model with no edge
        return np.random.default_rng(seed + 100).choice([-1.0, 1.0], N_BARS)
    raise ValueError(policy)


@functools.cache
def backtest(market: str, policy: str = "toggle", seed: int = 1) -> BacktestResult:
    times, open_, close = _bars(market, seed)
    return run_backtest(times, open_, close, _positions(policy, seed), fee_bps=1.0)


def metrics_of(
    market: str, policy: str = "toggle", seed: int = 1, incumbent_policy: str | None = None
) -> dict[str, float | None]:
    """``metrics_table`` of a backtest; ``psr_vs_incumbent`` against another policy on the
    same bars when ``incumbent_policy`` is given."""
    incumbent = None
    if incumbent_policy is not None:
        incumbent = backtest(market, incumbent_policy, seed).returns
    return metrics_table(backtest(market, policy, seed), "1h", incumbent_returns=incumbent)


def _crash_backtest() -> BacktestResult:
    times, _, close = _bars("strong", 1)
    close = close.copy()
    close[300:] *= 0.6  # a 40 % gap down halfway
    open_ = np.concatenate([[100.0], close[:-1]])
    return run_backtest(times, open_, close, _positions("toggle", 1), fee_bps=1.0)


# --------------------------------------------------------------------------- defaults


def test_strong_strategy_passes_every_gate_and_records_each_value():
    m = metrics_of("strong")
    gates = Gates()
    report = evaluate(m, None, False, gates)
    assert report.passed and report.failed == ()
    assert [g.name for g in report.gates] == list(GATE_NAMES)
    expected = {
        "trade_count": (m["trade_count"], 10.0, ">="),
        "sharpe": (m["sharpe"], 0.5, ">="),
        "max_drawdown": (abs(m["max_drawdown"]), 0.25, "<="),
        "profit_factor": (m["profit_factor"], 1.05, ">="),
        "psr_vs_flat": (m["psr"], 0.95, ">="),
    }
    for name, (value, threshold, comparator) in expected.items():
        g = report.gate(name)
        assert (g.value, g.threshold, g.comparator, g.passed) == (
            value,
            threshold,
            comparator,
            True,
        )
    assert m["max_drawdown"] < 0 < report.gate("max_drawdown").value


def test_without_incumbent_the_incumbent_gate_is_recorded_as_such_and_passes():
    report = evaluate(metrics_of("strong"), None, False, Gates())
    g = report.gate("psr_vs_incumbent")
    assert g.passed and g.value is None and NO_INCUMBENT in g.reason
    assert g.threshold == 0.95


def test_buy_and_hold_of_a_trend_fails_only_the_trade_count():
    m = metrics_of("strong", "hold")
    assert m["trade_count"] == 1.0
    report = evaluate(m, None, False, Gates())
    assert not report.passed
    assert report.failed == ("trade_count",)
    g = report.gate("trade_count")
    assert (g.value, g.threshold, g.comparator) == (1.0, 10.0, ">=")
    assert "trade_count 1 < 10" in report.summary()


def test_noise_fails_several_gates_each_with_its_value():
    m = metrics_of("noise")
    report = evaluate(m, None, False, Gates())
    assert not report.passed
    assert {"profit_factor", "psr_vs_flat"} <= set(report.failed)
    assert report.gate("psr_vs_flat").value == m["psr"] < 0.95
    assert report.gate("profit_factor").value == m["profit_factor"] < 1.05


def test_a_deep_drawdown_fails_on_its_absolute_value():
    m = metrics_table(_crash_backtest(), "1h")
    report = evaluate(m, None, False, Gates())
    g = report.gate("max_drawdown")
    assert m["max_drawdown"] < -0.25
    assert not g.passed and g.value == pytest.approx(-m["max_drawdown"])
    assert (g.threshold, g.comparator) == (0.25, "<=")


# --------------------------------------------------------------------------- one gate


def _gates_at(m: dict) -> dict[str, float]:
    """Thresholds exactly at the metrics' values: every gate passes on the boundary."""
    return {
        "min_trades": int(m["trade_count"]),
        "min_sharpe": m["sharpe"],
        "max_drawdown": abs(m["max_drawdown"]),
        "min_profit_factor": m["profit_factor"],
        "min_psr": m["psr"],
    }


TIGHTEN = {
    "trade_count": ("min_trades", lambda v: v + 1),
    "sharpe": ("min_sharpe", lambda v: v + 0.01),
    "max_drawdown": ("max_drawdown", lambda v: v * 0.99),
    "profit_factor": ("min_profit_factor", lambda v: v + 0.01),
    "psr_vs_flat": ("min_psr", lambda v: v + 0.01),
}


def test_thresholds_equal_to_the_values_pass():
    m = metrics_of("weak")
    assert evaluate(m, None, False, Gates(**_gates_at(m))).passed


@pytest.mark.parametrize("gate", list(TIGHTEN))
def test_each_gate_alone_rejects(gate):
    m = metrics_of("weak")  # psr 0.85: below 1, so the PSR gate can be tightened too
    config = _gates_at(m)
    field, tighten = TIGHTEN[gate]
    config[field] = tighten(config[field])
    gates = Gates(**config)
    report = evaluate(m, None, False, gates)
    assert not report.passed
    assert report.failed == (gate,)
    g = report.gate(gate)
    assert g.threshold == pytest.approx(float(config[field]))
    assert g.value is not None and g.reason.startswith(gate)
    assert report.as_dict()["failed"] == [gate]


def test_incumbent_gate_rejects_a_candidate_worse_than_the_incumbent_on_the_same_bars():
    # trading in and out of the trend against an incumbent that held it: slightly worse
    m = metrics_of("strong", "toggle", incumbent_policy="hold")
    assert m["psr_vs_incumbent"] is not None and m["psr_vs_incumbent"] < 0.95
    report = evaluate(m, m["psr_vs_incumbent"], True, Gates())
    assert report.failed == ("psr_vs_incumbent",)
    g = report.gate("psr_vs_incumbent")
    assert (g.value, g.threshold) == (m["psr_vs_incumbent"], 0.95)


def test_incumbent_gate_passes_a_candidate_that_beats_the_incumbent():
    m = metrics_of("strong", "toggle", incumbent_policy="random")
    assert m["psr_vs_incumbent"] >= 0.95
    report = evaluate(m, m["psr_vs_incumbent"], True, Gates())
    assert report.passed
    assert report.gate("psr_vs_incumbent").value == m["psr_vs_incumbent"]


# --------------------------------------------------------------------------- not computable


def test_a_flat_strategy_has_no_sharpe_profit_factor_or_psr_and_fails_those_gates():
    m = metrics_of("strong", "zero")
    assert m["sharpe"] is None and m["profit_factor"] is None and m["psr"] is None
    report = evaluate(m, None, False, Gates())
    assert not report.passed
    for name in ("sharpe", "profit_factor", "psr_vs_flat"):
        g = report.gate(name)
        assert not g.passed and g.value is None and NOT_COMPUTABLE in g.reason
    assert not report.gate("trade_count").passed  # 0 trades: computed, and too few
    assert report.gate("trade_count").value == 0.0


@pytest.mark.parametrize(
    ("key", "gate"),
    [
        ("trade_count", "trade_count"),
        ("sharpe", "sharpe"),
        ("max_drawdown", "max_drawdown"),
        ("profit_factor", "profit_factor"),
        ("psr", "psr_vs_flat"),
    ],
)
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "missing"])
def test_none_nan_or_missing_metric_fails_its_gate(key, gate, bad):
    m = dict(metrics_of("strong"))
    if bad == "missing":
        del m[key]
    else:
        m[key] = bad
    report = evaluate(m, None, False, Gates())
    assert report.failed == (gate,)
    g = report.gate(gate)
    assert g.value is None and not g.passed and NOT_COMPUTABLE in g.reason


def test_with_an_incumbent_a_missing_psr_vs_incumbent_fails():
    report = evaluate(metrics_of("strong"), None, True, Gates())
    assert report.failed == ("psr_vs_incumbent",)
    assert NOT_COMPUTABLE in report.gate("psr_vs_incumbent").reason


def test_empty_metrics_fail_every_metric_gate():
    report = evaluate({}, None, True, Gates())
    assert report.failed == GATE_NAMES
    assert all(g.value is None for g in report.gates)


# --------------------------------------------------------------------------- record


def test_report_is_json_and_round_trips():
    m = dict(metrics_of("noise"))
    m["sharpe"] = float("nan")
    report = evaluate(m, 0.4, True, Gates())
    text = json.dumps(report.as_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["passed"] is False
    assert data["failed"] == list(report.failed)
    assert {g["name"] for g in data["gates"]} == set(GATE_NAMES)
    for g in data["gates"]:
        assert set(g) == {"name", "value", "threshold", "comparator", "passed", "reason"}
    assert GateReport.from_dict(data) == report
    assert json.loads(json.dumps(Gates().as_dict())) == {
        "min_trades": 10,
        "min_sharpe": 0.5,
        "max_drawdown": 0.25,
        "min_profit_factor": 1.05,
        "min_psr": 0.95,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_trades": -1},
        {"min_trades": 2.5},
        {"max_drawdown": 0.0},
        {"max_drawdown": -0.2},
        {"max_drawdown": 1.5},
        {"min_psr": 1.2},
        {"min_sharpe": math.nan},
        {"min_profit_factor": -1.0},
    ],
)
def test_invalid_gate_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        Gates(**kwargs)
