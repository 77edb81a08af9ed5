"""Promotion gates on records of real backtests: every gate enforced, None never passes.

The backtests here (``backtest(market, policy, seed)``) are also the records of
``test_promotion``."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.promotion.judge import decide
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry.gates import (
    GATE_NAMES,
    NO_INCUMBENT,
    NOT_COMPUTABLE,
    GateReport,
    Gates,
    compare,
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


AS_OF = pd.Timestamp("2024-03-01", tz="UTC")
GATES = Gates(lookback_days=30, min_record_days=20)
"""The default gates but for the record length: these backtests are 25 days long."""


def record_of(
    result: BacktestResult, family: str = "xgboost", as_of=AS_OF, version: str = "v"
) -> FamilyRecord:
    """A record made of one backtest (one segment), as ``stitch_record`` returns it."""
    return FamilyRecord(
        family=family,
        symbol="BTC-USD",
        as_of=as_of,
        version=version,
        window_start=result.open_time[0],
        window_end=result.open_time[-1] + pd.Timedelta(hours=1),
        open_time=result.open_time,
        returns=result.returns,
        trade_count=len(result.trades),
        covered_bars=result.n_bars,
        segments=(),
        bars_per_day=24.0,
    )


def report_of(market: str, policy: str = "toggle", gates: Gates = GATES) -> GateReport:
    return decide("BTC-USD", AS_OF, [record_of(backtest(market, policy))], None, gates).reports[
        "xgboost"
    ]


def _crash_backtest() -> BacktestResult:
    times, _, close = _bars("strong", 1)
    close = close.copy()
    close[300:] *= 0.4  # a 60 % gap down halfway
    open_ = np.concatenate([[100.0], close[:-1]])
    return run_backtest(times, open_, close, _positions("toggle", 1), fee_bps=1.0)


def test_strong_strategy_passes_every_gate_and_records_each_value():
    report = report_of("strong")
    assert report.passed, report.summary()
    assert [g.name for g in report.gates] == list(GATE_NAMES)
    assert report.gate("record_bars").value == N_BARS - 1
    assert report.gate("trade_count").value == 24
    assert report.gate("paired_psr").reason == f"paired_psr: {NO_INCUMBENT}"
    assert report.summary() == "passed all gates"


def test_buy_and_hold_of_a_trend_fails_only_the_trade_count():
    report = report_of("strong", "hold")
    assert report.failed == ("trade_count",)
    assert report.gate("trade_count").reason == "trade_count 1 < 10"


def test_noise_fails_the_dsr_gate_with_its_value():
    report = report_of("noise")
    assert "dsr" in report.failed
    assert report.gate("dsr").value < GATES.min_dsr


def test_a_deep_drawdown_fails_on_its_absolute_value():
    result = _crash_backtest()
    report = decide("BTC-USD", AS_OF, [record_of(result)], None, GATES).reports["xgboost"]
    g = report.gate("max_drawdown")
    assert not g.passed and g.value > 0.5 and g.comparator == "<="


def test_a_flat_strategy_has_no_dsr_and_fails_that_gate():
    report = report_of("strong", "zero")
    g = report.gate("dsr")
    assert g.value is None and not g.passed and NOT_COMPUTABLE in g.reason


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "text"])
def test_a_value_that_is_not_a_finite_number_fails(bad):
    g = compare("dsr", bad, 0.9, ">=")
    assert g.value is None and not g.passed and g.reason == f"dsr: {NOT_COMPUTABLE}"


def test_thresholds_equal_to_the_values_pass():
    assert compare("dsr", 0.9, 0.9, ">=").passed
    assert compare("max_drawdown", 0.5, 0.5, "<=").passed
    assert not compare("forward_psr", 0.05, 0.05, ">").passed


def test_report_is_json_and_round_trips():
    report = report_of("noise")
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert data["passed"] is False and data["failed"] == list(report.failed)
    for g in data["gates"]:
        assert set(g) == {"name", "value", "threshold", "comparator", "passed", "reason"}
    assert GateReport.from_dict(data) == report
    assert json.loads(json.dumps(Gates().as_dict())) == Gates().as_dict()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_trades": -1},
        {"min_trades": 2.5},
        {"lookback_days": 0},
        {"lookback_days": 30.5},
        {"max_drawdown": 0.0},
        {"max_drawdown": 1.5},
        {"min_dsr": 1.2},
        {"min_paired_psr": -0.1},
        {"retire_psr": math.nan},
        {"min_record_days": 1000.0},
    ],
)
def test_invalid_gate_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        Gates(**kwargs)
