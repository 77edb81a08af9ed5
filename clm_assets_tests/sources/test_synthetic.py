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

from clm_assets.sources import synthetic
from clm_assets.sources.base import (
    OHLCV_COLUMNS,
    EmptyRangeError,
    OutOfRangeError,
    UnknownSymbolError,
    UnsupportedIntervalError,
)
from clm_assets.sources.intervals import INTERVALS
from clm_assets.sources.synthetic import BLOCK_BARS, EPOCH, SyntheticSource

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


@settings(max_examples=30, deadline=None)
@given(
    interval=st.sampled_from(list(INTERVALS)),
    start_bar=st.integers(0, 2 * 365 * 24 * 60),
    bars=st.integers(2, 2500),
    split=st.floats(0.0, 1.0, exclude_min=True),
)
def test_split_range_equals_whole_range(
    interval: str, start_bar: int, bars: int, split: float
) -> None:
    """``[a, c)`` equals ``[a, b)`` + ``[b, c)`` for any ``b`` (also between bar opens) that
    leaves a bar open on both sides."""
    delta = INTERVALS[interval]
    a = EPOCH + (start_bar % (2 * 365 * 86_400 // int(delta.total_seconds()))) * delta
    c = a + bars * delta
    b = a + pd.Timedelta(max(1, int(split * (bars - 1) * delta.value)), unit="ns")
    source = SyntheticSource(seed=5)
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
