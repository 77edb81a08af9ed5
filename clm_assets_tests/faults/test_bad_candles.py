"""Candle pages with a duplicate bar, a gap, NaN and high < low, as an exchange could send
them. A page that breaks the exchange's own format (a bar repeated or out of order within
a page) is malformed: asked again, and refused if it stays so. What can be repaired without
guessing (high < low) is repaired and counted; a gap is reported, never filled; a NaN
price fails the run before anything is written."""

from __future__ import annotations

import pandas as pd
import pytest

from clm_assets.settings import Settings
from clm_assets.sources.exchange import MalformedResponseError
from clm_assets.sources.validation import CandleValidationError
from clm_assets_tests.faults.conftest import exchange_settings, run, servers_bars, stored
from clm_assets_tests.sources.binance_server import BinanceServer, edited_page

COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]
DAY = "2024-01-12"  # one day after the stored history, 24 bars in one page


def _gap_and_swap(rows: list[list]) -> list[list]:
    """Bar 7 missing, bar 10 with its high and low swapped (high < low)."""
    rows = [list(r) for r in rows]
    rows[10][2], rows[10][3] = rows[10][3], rows[10][2]
    return rows[:7] + rows[8:]


def _messy(rows: list[list]) -> list[list]:
    """That, and bar 3 sent twice."""
    rows = _gap_and_swap(rows)
    return [*rows[:4], rows[3], *rows[4:]]


@pytest.fixture
def binanceus(exchange: BinanceServer, tmp_path) -> Settings:
    """An exchange read through ccxt's unified ``fetch_ohlcv``, not the raw Binance
    parser: a gap and a swapped high/low reach candle validation as sent (a repeated bar
    would still be refused as out of order by that parser)."""
    exchange.requests.clear()
    return exchange_settings(tmp_path / "us.duckdb", exchange, exchange_id="binanceus")


def test_on_binance_a_messy_page_is_malformed_and_asked_again(
    deployment: Settings, exchange: BinanceServer
) -> None:
    # Binance never repeats or reorders a bar within a page: the raw parser refuses the
    # page as malformed, the source asks again, and the clean answer lands whole
    exchange.push(edited_page(_messy))
    assert run(deployment, DAY, DAY).success
    day = _day(stored(deployment))
    pd.testing.assert_frame_equal(day[COLUMNS], servers_bars(exchange, DAY, DAY))
    assert [r.fault for r in exchange.requests_to()] == ["edited", None]


def test_a_page_that_stays_messy_fails_the_run_and_writes_nothing(
    deployment: Settings, exchange: BinanceServer
) -> None:
    before = stored(deployment)
    exchange.push(*[edited_page(_messy)] * 3)
    with pytest.raises(MalformedResponseError, match="not strictly ascending"):
        run(deployment, DAY, DAY)
    pd.testing.assert_frame_equal(stored(deployment), before)


def test_a_gap_and_high_below_low_are_reported_and_repaired_never_filled(
    binanceus: Settings, exchange: BinanceServer
) -> None:
    exchange.push(edited_page(_gap_and_swap))
    result = run(binanceus, DAY, DAY)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("market_data__raw_ohlcv")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["step_missing_bars"] == meta["missing_bars"] == 1
    assert meta["step_highs_repaired"] == meta["step_lows_repaired"] == 1
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"candles_valid": True, "no_missing_bars": False}

    day = _day(stored(binanceus))
    truth = servers_bars(exchange, DAY, DAY)
    assert len(day) == 23 and not day.duplicated("open_time").any()
    assert pd.Timestamp(f"{DAY} 07:00", tz="UTC") not in set(day["open_time"])  # not invented
    swapped = day.iloc[9]  # bar 10, one position earlier after the gap
    assert swapped["high"] >= max(swapped["open"], swapped["close"]) >= swapped["low"]
    untouched = truth.drop(index=[7, 10]).reset_index(drop=True)
    pd.testing.assert_frame_equal(day.drop(index=9).reset_index(drop=True)[COLUMNS], untouched)


def _nan_close(rows: list[list]) -> list[list]:
    rows = [list(r) for r in rows]
    rows[30][4] = "NaN"  # a bar of DAY (the page starts the day before)
    return rows


def test_a_nan_price_fails_the_run_and_the_stored_days_stay_as_they_were(
    binanceus: Settings, exchange: BinanceServer
) -> None:
    run(binanceus, "2024-01-11", "2024-01-11")
    before = stored(binanceus)
    exchange.push(edited_page(_nan_close))
    with pytest.raises(CandleValidationError, match="NaN"):
        run(binanceus, "2024-01-11", DAY)  # re-fetching a stored day with a new one
    pd.testing.assert_frame_equal(stored(binanceus), before)


def _day(bars: pd.DataFrame) -> pd.DataFrame:
    return bars[bars["open_time"] >= pd.Timestamp(DAY, tz="UTC")].reset_index(drop=True)
