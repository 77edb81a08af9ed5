"""The synthetic GARCH source: crypto-like stylized facts, valid candles, and bars that are a
pure function of (parameters, symbol, interval, time) however the range is cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.diagnostic import acorr_ljungbox

from clm_assets.backtest.engine import run_backtest
from clm_assets.features.indicators import compute_features
from clm_assets.models.gbdt import XGBoostModel
from clm_assets.sources import synthetic
from clm_assets.sources.base import (
    OHLCV_COLUMNS,
    EmptyRangeError,
    OutOfRangeError,
    UnknownSymbolError,
    UnsupportedIntervalError,
)
from clm_assets.sources.intervals import INTERVALS
from clm_assets.sources.synthetic import BLOCK_BARS, EPOCH, PlantedSignal, SyntheticSource

YEAR = (pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    """One year of hourly bars at a fixed seed: the sample the stylized facts are measured on."""
    return SyntheticSource(seed=7).fetch("BTC-USD", "1h", *YEAR)


def _log_returns(bars: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(bars["close"].to_numpy()))


def _assert_valid_candles(bars: pd.DataFrame) -> None:
    assert list(bars.columns) == list(OHLCV_COLUMNS)
    assert str(bars["open_time"].dtype) == "datetime64[ns, UTC]"
    assert str(bars["trades"].dtype) == "Int64"
    o, h, lo, c = (bars[col].to_numpy() for col in ("open", "high", "low", "close"))
    assert (lo > 0).all()
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (bars["volume"] > 0).all()
    assert (bars["trades"] >= 1).all()
    assert bars.notna().all().all()
    # A 24/7 market: each bar opens where the previous one closed.
    np.testing.assert_array_equal(o[1:], c[:-1])


def test_fat_tails(year: pd.DataFrame) -> None:
    assert stats.kurtosis(_log_returns(year)) > 3.0


def test_volatility_clusters(year: pd.DataFrame) -> None:
    squared = _log_returns(year) ** 2
    assert acorr_ljungbox(squared, lags=[10])["lb_pvalue"].iloc[0] < 0.01


def test_returns_are_not_linearly_predictable(year: pd.DataFrame) -> None:
    returns = pd.Series(_log_returns(year))
    assert abs(returns.autocorr(lag=1)) < 0.1


def test_hourly_volatility_is_near_sigma_hourly(year: pd.DataFrame) -> None:
    assert 0.7 * 0.008 < _log_returns(year).std() < 1.4 * 0.008


def test_intraday_volume_cycle(year: pd.DataFrame) -> None:
    by_hour = year.groupby(year["open_time"].dt.hour)["volume"].mean()
    assert by_hour.max() / by_hour.min() > 1.5


def test_volume_follows_moves_and_trades_follow_volume(year: pd.DataFrame) -> None:
    abs_move = np.abs(_log_returns(year))
    assert stats.spearmanr(year["volume"].to_numpy()[1:], abs_move).statistic > 0.2
    trades = year["trades"].to_numpy(dtype="float64")
    assert np.corrcoef(year["volume"].to_numpy(), trades)[0, 1] > 0.9


def test_quote_volume_is_volume_times_typical_price(year: pd.DataFrame) -> None:
    typical = (year["high"] + year["low"] + year["close"]) / 3
    np.testing.assert_allclose(year["quote_volume"], year["volume"] * typical, rtol=1e-12)


def test_every_bar_is_a_valid_candle(year: pd.DataFrame) -> None:
    assert len(year) == 366 * 24
    assert (year["open_time"].diff().dropna() == pd.Timedelta(hours=1)).all()
    _assert_valid_candles(year)


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_every_interval_tiles_a_day(interval: str) -> None:
    day = (pd.Timestamp("2016-03-01", tz="UTC"), pd.Timestamp("2016-03-02", tz="UTC"))
    bars = SyntheticSource().fetch("BTC-USD", interval, *day)
    delta = INTERVALS[interval]
    assert len(bars) == pd.Timedelta(days=1) // delta
    assert bars["open_time"].iloc[0] == day[0]
    assert (bars["open_time"].diff().dropna() == delta).all()
    _assert_valid_candles(bars)


@pytest.mark.parametrize(
    ("interval", "start", "end"),
    [("1m", "2016-01-01", "2016-01-08"), ("4h", "2020-01-01", "2025-01-01")],
)
def test_volatility_scales_with_sqrt_interval(interval: str, start: str, end: str) -> None:
    bars = SyntheticSource().fetch("BTC-USD", interval, pd.Timestamp(start), pd.Timestamp(end))
    expected = 0.008 * np.sqrt(INTERVALS[interval] / pd.Timedelta(hours=1))
    assert 0.7 * expected < _log_returns(bars).std() < 1.4 * expected


def test_deterministic_per_seed_and_symbol() -> None:
    start, end = pd.Timestamp("2023-05-01", tz="UTC"), pd.Timestamp("2023-05-08", tz="UTC")
    first = SyntheticSource(seed=11).fetch("SOL-USD", "15m", start, end)
    synthetic._LEVELS.clear()  # a fresh process: nothing cached
    again = SyntheticSource(seed=11).fetch("SOL-USD", "15m", start, end)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    other_seed = SyntheticSource(seed=12).fetch("SOL-USD", "15m", start, end)
    assert not np.allclose(first["close"], other_seed["close"])


def test_different_symbols_differ(year: pd.DataFrame) -> None:
    eth = SyntheticSource(seed=7).fetch("ETH-USD", "1h", *YEAR)
    assert not np.allclose(year["close"], eth["close"])
    assert abs(np.corrcoef(_log_returns(year), _log_returns(eth))[0, 1]) < 0.1


def test_cache_extension_order_does_not_change_bars() -> None:
    near = (pd.Timestamp("2016-02-01", tz="UTC"), pd.Timestamp("2016-02-03", tz="UTC"))
    far = (pd.Timestamp("2022-02-01", tz="UTC"), pd.Timestamp("2022-02-03", tz="UTC"))
    source = SyntheticSource(seed=3)
    synthetic._LEVELS.clear()
    near_first = [source.fetch("BTC-EUR", "5m", *near), source.fetch("BTC-EUR", "5m", *far)]
    synthetic._LEVELS.clear()
    far_first = [source.fetch("BTC-EUR", "5m", *far), source.fetch("BTC-EUR", "5m", *near)]
    pd.testing.assert_frame_equal(near_first[0], far_first[1], check_exact=True)
    pd.testing.assert_frame_equal(near_first[1], far_first[0], check_exact=True)


def test_daily_partitions_concatenate_to_one_fetch() -> None:
    # 1h blocks hold 1024 bars (~42.7 days): this range straddles the boundary at bar 1024.
    source = SyntheticSource()
    days = pd.date_range(EPOCH + pd.Timedelta(days=40), periods=6, freq="D")
    whole = source.fetch("BTC-USD", "1h", days[0], days[-1] + pd.Timedelta(days=1))
    parts = [source.fetch("BTC-USD", "1h", d, d + pd.Timedelta(days=1)) for d in days]
    assert whole["open_time"].iloc[0] < EPOCH + BLOCK_BARS * pd.Timedelta(hours=1)
    assert whole["open_time"].iloc[-1] > EPOCH + BLOCK_BARS * pd.Timedelta(hours=1)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole, check_exact=True)


@settings(max_examples=40, deadline=None)
@given(
    interval=st.sampled_from(list(INTERVALS)),
    start_bar=st.integers(0, 2 * 365 * 24 * 60),
    bars=st.integers(2, 2500),
    split=st.floats(0.0, 1.0, exclude_min=True),
    flip=st.none() | st.floats(-0.5, 1.5),
    planted=st.booleans(),
)
def test_split_range_equals_whole_range(
    interval: str, start_bar: int, bars: int, split: float, flip: float | None, planted: bool
) -> None:
    """``[a, c)`` equals ``[a, b)`` + ``[b, c)`` for any ``b`` (also between bar opens) that
    leaves a bar open on both sides, with or without a planted signal, whose flip may fall
    before, inside (anywhere, also between bar opens) or after the range."""
    delta = INTERVALS[interval]
    a = EPOCH + (start_bar % (2 * 365 * 86_400 // int(delta.total_seconds()))) * delta
    c = a + bars * delta
    b = a + pd.Timedelta(max(1, int(split * (bars - 1) * delta.value)), unit="ns")
    flip_at = None if flip is None else a + pd.Timedelta(int(flip * (c - a).value), unit="ns")
    signal = PlantedSignal(0.3, flip_at=flip_at) if planted else None
    source = SyntheticSource(seed=5, signal=signal)
    whole = source.fetch("ADA-USDT", interval, a, c)
    head = source.fetch("ADA-USDT", interval, a, b)
    tail = source.fetch("ADA-USDT", interval, b, c)
    assert len(whole) == bars
    pd.testing.assert_frame_equal(
        pd.concat([head, tail], ignore_index=True), whole, check_exact=True
    )


@pytest.mark.parametrize(
    "symbol", ["btc-usd", "BTCUSD", "BTC/USD", "BTC-USD,ETH-USD", "BTC-USD|x", "BTC-USD-PERP", ""]
)
def test_bad_symbol(symbol: str) -> None:
    with pytest.raises(UnknownSymbolError, match="BASE-QUOTE"):
        SyntheticSource().fetch(symbol, "1h", *YEAR)


def test_unsupported_interval() -> None:
    with pytest.raises(UnsupportedIntervalError):
        SyntheticSource().fetch("BTC-USD", "2m", *YEAR)


def test_before_the_epoch_is_out_of_range() -> None:
    with pytest.raises(OutOfRangeError, match="2015-01-01"):
        SyntheticSource().fetch(
            "BTC-USD", "1h", pd.Timestamp("2014-12-31 23:00"), pd.Timestamp("2015-01-02")
        )


def test_empty_ranges() -> None:
    with pytest.raises(EmptyRangeError):
        SyntheticSource().fetch("BTC-USD", "1h", YEAR[0], YEAR[0])
    with pytest.raises(EmptyRangeError, match="1h"):
        SyntheticSource().fetch(
            "BTC-USD", "1h", pd.Timestamp("2024-01-01 00:10"), pd.Timestamp("2024-01-01 00:50")
        )


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 0.2, "beta": 0.8},
        {"alpha": -0.1},
        {"nu": 2.0},
        {"sigma_hourly": 0.0},
        {"start_price": -1.0},
        {"seed": -1},
    ],
)
def test_invalid_parameters(params: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticSource(**params)


# -- the planted signal ---------------------------------------------------------------------

FLIP = pd.Timestamp("2024-03-01", tz="UTC")
SIGNAL = PlantedSignal(0.3, flip_at=FLIP)


def _drift_aligned_hours(signal: PlantedSignal) -> np.ndarray:
    """UTC hours whose bar (opening at that hour) drifts upward before the flip."""
    mid = np.arange(24) + 0.5
    return np.flatnonzero(np.cos(2 * np.pi * (mid - signal.phase_hours) / 24) > 0)


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    """60 days of hourly bars either side of the flip."""
    source = SyntheticSource(seed=7, signal=SIGNAL)
    return source.fetch("BTC-USD", "1h", FLIP - pd.Timedelta(days=60), FLIP + pd.Timedelta(days=60))


def test_signal_is_in_the_name() -> None:
    assert SyntheticSource().name == "synthetic"
    assert SyntheticSource(signal=SIGNAL).name == (
        "synthetic+signal(strength=0.3,phase=14,flip=2024-03-01T00:00:00Z)"
    )
    no_flip = SyntheticSource(signal=PlantedSignal(0.15, phase_hours=2.5))
    assert no_flip.name == "synthetic+signal(strength=0.15,phase=2.5,flip=none)"
    assert SyntheticSource.name == "synthetic"  # the class keeps the plain name


def test_signal_flips_the_hour_of_day_drift(planted: pd.DataFrame) -> None:
    """What a user sees: before the flip the drift-aligned hours rise and the others fall;
    from the flip on it is the other way round."""
    returns = np.log(planted["close"] / planted["open"])
    aligned = planted["open_time"].dt.hour.isin(_drift_aligned_hours(SIGNAL))
    before = planted["open_time"] < FLIP
    assert returns[before & aligned].mean() > 0 > returns[before & ~aligned].mean()
    assert returns[~before & aligned].mean() < 0 < returns[~before & ~aligned].mean()


def test_signal_leaves_the_garch_path_alone(planted: pd.DataFrame) -> None:
    """The drift is exogenous: a bar's move differs from the plain series' (same seed) by the
    drift alone, whose sign is set by the hour and the flip."""
    plain = SyntheticSource(seed=7).fetch(
        "BTC-USD", "1h", planted["open_time"].iloc[0], planted["open_time"].iloc[-1]
    )
    n = len(plain)
    moved = np.log(planted["close"] / planted["open"]).to_numpy()[:n]
    base = np.log(plain["close"] / plain["open"]).to_numpy()
    aligned = planted["open_time"].dt.hour.isin(_drift_aligned_hours(SIGNAL)).to_numpy()[:n]
    sign = np.where((planted["open_time"] < FLIP).to_numpy()[:n], 1, -1)
    np.testing.assert_array_equal(np.sign(moved - base), np.where(aligned, sign, -sign))


def test_a_fitted_model_learns_the_signal_and_loses_after_the_flip(
    planted: pd.DataFrame,
) -> None:
    """XGBoost fitted on 40 days before the flip earns out of sample until the flip, net of
    10 bps fees, and loses from the flip on."""
    horizon = 4
    features = compute_features(planted, "BTC-USD", horizon)
    t = features["open_time"]
    train_end = FLIP - pd.Timedelta(days=20)
    train = features[(t >= t.iloc[0] + pd.Timedelta(days=10)) & (t < train_end)]
    params = {**XGBoostModel.default_params(), "n_estimators": 100, "max_depth": 2}
    model = XGBoostModel(params, seed=0)
    model.fit(train.iloc[:-horizon], horizon)  # the last labels would reach the test span

    def net_sharpe(start: pd.Timestamp, end: pd.Timestamp) -> float:
        rows = ((t >= start) & (t < end)).to_numpy()
        bars = planted[rows]
        position = model.predict(features[rows])["position"].to_numpy()
        result = run_backtest(bars["open_time"], bars["open"], bars["close"], position)
        return float(result.returns.mean() / result.returns.std() * np.sqrt(8760))

    assert net_sharpe(train_end, FLIP) > 1.0
    assert net_sharpe(FLIP, FLIP + pd.Timedelta(days=20)) < -1.0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"strength": 0.0}, "positive"),
        ({"strength": -0.1}, "positive"),
        ({"strength": float("nan")}, "positive"),
        ({"strength": 0.1, "phase_hours": 24.0}, "phase_hours"),
        ({"strength": 0.1, "phase_hours": -1.0}, "phase_hours"),
    ],
)
def test_invalid_signal(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PlantedSignal(**params)


def test_signal_must_be_a_planted_signal() -> None:
    with pytest.raises(ValueError, match="PlantedSignal"):
        SyntheticSource(signal=0.1)  # type: ignore[arg-type]


def test_naive_flip_is_utc() -> None:
    assert PlantedSignal(0.1, flip_at=pd.Timestamp("2024-03-01")).flip_at == FLIP
