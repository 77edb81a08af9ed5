"""The degradation detector on hand-built records: what fires, when, why, and what must not.

The error rates of the defaults are measured by ``benchmarks/bench_degradation.py``; these
tests pin the behaviour that the sensor and the UI rely on.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clm_assets.monitoring.degradation import (
    CUSUM,
    DRAWDOWN,
    DetectorConfig,
    Expectation,
    alarms,
    cusum_path,
    detect,
)

VOL = 0.006
SHARPE = 5.0
EXPECTATION = Expectation.from_annual(
    SHARPE, VOL * np.sqrt(8760), -0.2, 8760, "xgboost v7, backtest 2024-07-01..2024-12-31"
)
CONFIG = DetectorConfig()


def _series(values: np.ndarray, start: str = "2025-01-01") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq="h", tz="UTC")
    return pd.Series(values, index=index, dtype=np.float64)


def _record(means: np.ndarray, seed: int) -> pd.Series:
    """Gaussian shocks at the expectation's std around per-bar ``means``."""
    rng = np.random.default_rng(seed)
    return _series(means + EXPECTATION.std * rng.standard_normal(len(means)))


def _reference_cusum(values: np.ndarray, e: Expectation, c: DetectorConfig) -> np.ndarray:
    """The CUSUM recursion one bar at a time, as the module docstring states it."""
    s, out = 0.0, []
    for r in values:
        z = min(max((c.haircut * e.mean - r) / e.std, -c.clip), c.clip)
        s = max(0.0, s + z - c.k)
        out.append(s)
    return np.array(out)


def test_expectation_from_annual_gives_per_bar_numbers() -> None:
    e = Expectation.from_annual(2.0, 0.5, -0.1, 8760, "v")
    assert e.std == pytest.approx(0.5 / np.sqrt(8760))
    assert e.mean / e.std == pytest.approx(2.0 / np.sqrt(8760))


def test_as_promised_does_not_fire() -> None:
    verdict = detect(_record(np.full(720, EXPECTATION.mean), seed=1), EXPECTATION, CONFIG)
    assert not verdict.fired and verdict.rule is None and verdict.fired_at is None
    assert verdict.bars == 720 and verdict.threshold == CONFIG.threshold
    assert verdict.reason.startswith("not fired: CUSUM ")


def test_flipped_edge_fires_after_the_flip_and_says_why() -> None:
    # the edge flips at bar 240 to a loss of 3 promised means a bar
    means = np.where(np.arange(720) < 240, EXPECTATION.mean, -3 * EXPECTATION.mean)
    returns = _record(means, seed=2)
    verdict = detect(returns, EXPECTATION, CONFIG)
    assert verdict.fired and verdict.rule == CUSUM
    assert verdict.fired_at is not None and verdict.fired_at > returns.index[240]
    assert verdict.statistic > verdict.threshold == CONFIG.threshold
    assert verdict.bars == returns.index.get_loc(verdict.fired_at) + 1
    assert verdict.window == (returns.index[0], verdict.fired_at)
    assert f"CUSUM {verdict.statistic:.3g} > {CONFIG.threshold:.3g}" in verdict.reason
    assert f"over {verdict.bars} bars [2025-01-01 00:00, " in verdict.reason
    assert f"{verdict.fired_at:%Y-%m-%d %H:%M}]" in verdict.reason
    assert EXPECTATION.label in verdict.reason
    assert f"haircut {CONFIG.haircut:g} of backtest" in verdict.reason
    assert cusum_path(returns, EXPECTATION, CONFIG)[verdict.fired_at] == verdict.statistic


def test_one_huge_outlier_bar_does_not_fire() -> None:
    # a -30 % bar is 50 backtest stds: unwinsorized it alone would cross the threshold
    expectation = replace(EXPECTATION, max_drawdown=-0.3)  # floor 45 %: out of reach
    values = np.full(300, EXPECTATION.mean)
    values[150] = -0.3
    returns = _series(values)
    assert not detect(returns, expectation, CONFIG).fired
    unclipped = detect(returns, expectation, replace(CONFIG, clip=1000.0))
    assert unclipped.fired and unclipped.rule == CUSUM
    assert unclipped.fired_at == returns.index[150]


def test_drawdown_floor_fires_when_the_cusum_is_still_quiet() -> None:
    # a wide promise (std 5 %) keeps the CUSUM slow; -0.5 % a bar passes the 30 % floor
    # (1.5 x |-20 %|, above a 5 % minimum) after 72 bars: 1 - 0.995 ** 72 = 30.3 %
    expectation = Expectation(mean=0.0, std=0.05, max_drawdown=-0.2, label="wide")
    returns = _series(np.full(200, -0.005))
    config = replace(CONFIG, min_drawdown=0.05)
    verdict = detect(returns, expectation, config)
    assert verdict.fired and verdict.rule == DRAWDOWN
    assert verdict.fired_at == returns.index[71]
    assert verdict.threshold == verdict.drawdown_floor == pytest.approx(0.3)
    assert verdict.statistic == pytest.approx(1 - 0.995**72)
    assert verdict.drawdown == pytest.approx(-verdict.statistic)
    assert verdict.reason.startswith("drawdown -30.3 % vs floor -30 % (1.5 × backtest -20 %")
    assert cusum_path(returns, expectation, config).iloc[71] < config.threshold


def test_drawdown_floor_has_an_absolute_minimum() -> None:
    shallow = replace(EXPECTATION, max_drawdown=-0.01)
    assert CONFIG.drawdown_floor(shallow) == CONFIG.min_drawdown


def test_restart_after_an_alarm_fires_once_per_bad_stretch() -> None:
    # 200 bars as promised, 150 bad bars, then 500 bars as promised again
    means = np.concatenate(
        [np.full(200, EXPECTATION.mean), np.full(150, -10 * EXPECTATION.mean),
         np.full(500, EXPECTATION.mean)]
    )  # fmt: skip
    returns = _record(means, seed=3)
    first = detect(returns, EXPECTATION, CONFIG)
    assert first.fired and first.fired_at is not None
    assert returns.index[200] < first.fired_at <= returns.index[349]
    # the sensor's contract: pass only the bars strictly after the alarm
    rest = returns[returns.index > first.fired_at]
    path = cusum_path(rest, EXPECTATION, CONFIG)
    assert path.iloc[0] == _reference_cusum(rest.to_numpy()[:1], EXPECTATION, CONFIG)[0]
    again = detect(rest, EXPECTATION, CONFIG)
    assert not again.fired
    assert again.window == (rest.index[0], rest.index[-1]) and again.bars == len(rest)


def test_no_alarm_before_min_bars() -> None:
    returns = _series(np.full(10, -0.1))  # 65 % down in 10 bars: both rules would fire
    verdict = detect(returns, EXPECTATION, CONFIG)
    assert not verdict.fired and verdict.bars == 10
    assert verdict.reason.startswith("not judged: 10 bars [") and "min_bars 24" in verdict.reason
    assert detect(returns, EXPECTATION, replace(CONFIG, min_bars=5)).fired_at == returns.index[4]


def test_empty_record_is_not_fired() -> None:
    verdict = detect(pd.Series([], dtype=np.float64), EXPECTATION, CONFIG)
    assert not verdict.fired and verdict.bars == 0 and verdict.window is None
    assert "no live bars" in verdict.reason and EXPECTATION.label in verdict.reason


@pytest.mark.parametrize("std", [0.0, -0.01, float("nan"), float("inf")])
def test_unusable_std_raises(std: float) -> None:
    with pytest.raises(ValueError, match="std"):
        Expectation(mean=0.001, std=std, max_drawdown=-0.1, label="v3")


def test_nan_return_names_the_first_bad_bar() -> None:
    values = np.full(50, 0.001)
    values[[17, 30]] = np.nan
    returns = _series(values)
    with pytest.raises(ValueError, match=r"2025-01-01 17:00:00\+00:00 is nan; 2 non-finite"):
        detect(returns, EXPECTATION, CONFIG)
    with pytest.raises(ValueError, match="17:00"):
        cusum_path(returns, EXPECTATION, CONFIG)


@pytest.mark.parametrize(
    "index",
    [
        pd.date_range("2025-01-01", periods=3, freq="h"),  # naive
        pd.date_range("2025-01-01", periods=3, freq="h", tz="UTC")[::-1],
        pd.RangeIndex(3),
    ],
)
def test_index_must_be_increasing_utc_open_times(index: pd.Index) -> None:
    with pytest.raises(ValueError, match=r"open times|UTC"):
        detect(pd.Series([0.0, 0.0, 0.0], index=index), EXPECTATION, CONFIG)


@pytest.mark.parametrize(
    "change",
    [
        {"haircut": 1.5},
        {"threshold": 0.0},
        {"k": -0.1},
        {"clip": float("nan")},
        {"min_bars": 0},
        {"min_drawdown": 0.0},
    ],
)
def test_config_is_validated(change: dict) -> None:
    with pytest.raises(ValueError):
        replace(CONFIG, **change)


_returns = arrays(
    np.float64,
    st.integers(0, 200),
    elements=st.floats(-0.05, 0.05, allow_nan=False, allow_subnormal=False),
)
_expectations = st.builds(
    Expectation,
    mean=st.floats(-0.005, 0.005, allow_subnormal=False),
    std=st.floats(1e-3, 0.05),
    max_drawdown=st.floats(-0.5, 0.0),
    label=st.just("prop"),
)
_configs = st.builds(
    DetectorConfig,
    haircut=st.floats(0.0, 1.0),
    threshold=st.floats(0.5, 20.0),
    k=st.floats(0.0, 0.5),
    clip=st.floats(0.5, 6.0),
    min_bars=st.integers(1, 30),
)


@settings(max_examples=100, deadline=None)
@given(values=_returns, expectation=_expectations, config=_configs, power=st.integers(-6, 4))
def test_scaling_returns_and_expectation_changes_no_verdict(
    values: np.ndarray, expectation: Expectation, config: DetectorConfig, power: int
) -> None:
    """Scale invariance of the CUSUM. The factor is a power of two so that the scaled
    standardized returns are bit-identical; the drawdown rule is in equity units on purpose
    (losing 30 % hurts at any volatility), so its floor is set out of reach (100 %)."""
    config = replace(config, min_drawdown=1.0)
    factor = 2.0**power
    scaled = replace(expectation, mean=expectation.mean * factor, std=expectation.std * factor)
    a = detect(_series(values), expectation, config)
    b = detect(_series(values * factor), scaled, config)
    assert (a.fired, a.rule, a.fired_at, a.bars, a.window) == (
        b.fired, b.rule, b.fired_at, b.bars, b.window
    )  # fmt: skip
    assert a.statistic == b.statistic and a.threshold == b.threshold


@settings(max_examples=100, deadline=None)
@given(values=_returns, expectation=_expectations, config=_configs)
def test_cusum_path_is_the_recursion_and_the_alarm_is_its_first_crossing(
    values: np.ndarray, expectation: Expectation, config: DetectorConfig
) -> None:
    returns = _series(values)
    path = cusum_path(returns, expectation, config)
    assert path.index.equals(returns.index)
    assert (path >= 0.0).all()
    np.testing.assert_allclose(path, _reference_cusum(values, expectation, config), atol=1e-9)
    verdict = detect(returns, expectation, config)
    eligible = path.iloc[config.min_bars - 1 :]
    if verdict.fired_at is None:
        assert len(values) < config.min_bars or (eligible <= config.threshold).all()
        return
    assert (eligible[eligible.index < verdict.fired_at] <= config.threshold).all()
    if verdict.rule == CUSUM:
        assert path[verdict.fired_at] > config.threshold == verdict.threshold


def test_alarms_restart_after_each_and_respect_the_cooldown() -> None:
    expectation = Expectation(mean=0.001, std=0.01, max_drawdown=-0.5, label="test")
    config = DetectorConfig(
        haircut=0.5, threshold=5.0, k=0.0, min_bars=1, drawdown_multiple=1.0, min_drawdown=0.05
    )
    index = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    losing = pd.Series(-0.01, index=index)  # each bar adds (0.0005 + 0.01) / 0.01 = 1.05
    found, after = alarms(losing, expectation, config)
    assert [v.fired_at for v in found] == list(index[4::5])  # fires every 5th bar
    assert not after.fired
    spaced, _ = alarms(losing, expectation, config, cooldown=pd.Timedelta(hours=12))
    assert [v.fired_at for v in spaced] == [index[4], index[19], index[34], index[49]]
