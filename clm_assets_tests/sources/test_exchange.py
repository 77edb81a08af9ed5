"""``ExchangeSource`` over real HTTP against the loopback Binance server (``binance_server``).

Nothing is mocked: ccxt sends real requests to a real socket; only ``sleep`` is injected so
that back-off waits are recorded instead of slept, and ``clock`` where "now" matters.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from clm_assets.sources.base import (
    OHLCV_COLUMNS,
    EmptyRangeError,
    ExchangeUnavailableError,
    OutOfRangeError,
    SourceError,
    UnknownSymbolError,
    UnsupportedIntervalError,
)
from clm_assets.sources.exchange import (
    ExchangeSource,
    MalformedResponseError,
    _retry_after,
)
from clm_assets_tests.sources.binance_server import (
    EXCHANGE_INFO,
    KLINES,
    BinanceServer,
    banned,
    empty_page,
    malformed,
    ok,
    rate_limited,
    server_error,
    short_rows,
    slow,
    stale_page,
)

HOUR_MS = 3_600_000
T0 = pd.Timestamp("2024-01-01", tz="UTC")
T0_MS = T0.value // 1_000_000
DAY = (T0, T0 + pd.Timedelta(days=1))


@pytest.fixture
def server() -> Iterator[BinanceServer]:
    with BinanceServer(seed=7) as srv:
        yield srv


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def source(server: BinanceServer, waits: list[float]) -> ExchangeSource:
    return ExchangeSource(api_url=server.api_url, sleep=waits.append)


def expected_frame(server: BinanceServer, symbol: str, start: pd.Timestamp, end: pd.Timestamp):
    """The server's own rows for the range, as numbers (the truth to compare with)."""
    rows = server.rows(symbol, "1h", start.value // 1_000_000, end.value // 1_000_000)
    return pd.DataFrame(
        {
            "open_time": pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
            **{
                col: [float(r[i]) for r in rows]
                for col, i in [
                    ("open", 1),
                    ("high", 2),
                    ("low", 3),
                    ("close", 4),
                    ("volume", 5),
                    ("quote_volume", 7),
                ]
            },
            "trades": pd.array([r[8] for r in rows], dtype="Int64"),
        }
    )


def assert_frame_is_servers(frame: pd.DataFrame, server: BinanceServer, start, end) -> None:
    assert tuple(frame.columns) == OHLCV_COLUMNS
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(frame, expected_frame(server, "BTCUSDT", start, end))


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- pagination -----------------------------------------------------------------------------
def test_range_over_1000_bars_is_paginated_exactly(server, source, waits):
    start, end = T0, T0 + pd.Timedelta(hours=2500)
    frame = source.fetch("BTC-USDT", "1h", start, end)

    assert list(frame["open_time"]) == list(pd.date_range(start, end, freq="1h", inclusive="left"))
    assert frame["open_time"].is_unique
    assert (frame["open_time"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert_frame_is_servers(frame, server, start, end)
    assert frame["trades"].notna().all() and (frame["quote_volume"] > 0).all()

    klines = server.requests_to(KLINES)
    assert [r.params["startTime"] for r in klines] == [
        str(T0_MS),
        str(T0_MS + 1000 * HOUR_MS),
        str(T0_MS + 2000 * HOUR_MS),
    ]
    end_ms = end.value // 1_000_000
    for r in klines:
        assert r.params["symbol"] == "BTCUSDT" and r.params["interval"] == "1h"
        assert r.params["limit"] == "1000"
        assert r.params["endTime"] == str(end_ms - 1)
    assert waits == []


def test_markets_load_once_across_fetches(server, source):
    source.fetch("BTC-USDT", "1h", *DAY)
    eth = source.fetch("ETH-USDT", "1h", *DAY)
    assert len(eth) == 24
    assert not np.allclose(eth["close"], source.fetch("BTC-USDT", "1h", *DAY)["close"])
    assert len(server.requests_to(EXCHANGE_INFO)) == 1
    assert len(server.requests_to(KLINES)) == 3


def test_page_that_does_not_advance_raises(server, source):
    server.push(ok(), stale_page(T0_MS))  # the second page repeats the first one
    with pytest.raises(SourceError, match="pagination cannot advance"):
        source.fetch("BTC-USDT", "1h", T0, T0 + pd.Timedelta(hours=2500))
    assert len(server.requests_to(KLINES)) == 2


@pytest.mark.parametrize("exchange_id", ["binance", "binanceus"])
def test_an_empty_page_inside_the_range_is_asked_again_and_loses_no_bar(server, waits, exchange_id):
    # the second page (hours 1000-1999) comes back empty once, a hiccup: the source asks
    # for the same span again after the first back-off step and every bar arrives
    source = ExchangeSource(exchange_id, api_url=server.api_url, sleep=waits.append)
    server.push(ok(), empty_page())
    start, end = T0, T0 + pd.Timedelta(hours=2500)
    frame = source.fetch("BTC-USDT", "1h", start, end)

    cols = list(OHLCV_COLUMNS[:6])
    truth = expected_frame(server, "BTCUSDT", start, end)
    pd.testing.assert_frame_equal(frame[cols], truth[cols])
    starts = [int(r.params["startTime"]) for r in server.requests_to(KLINES)]
    assert starts[:3] == [T0_MS, T0_MS + 1000 * HOUR_MS, T0_MS + 1000 * HOUR_MS]
    assert waits == [1.0]


@pytest.mark.parametrize("exchange_id", ["binance", "binanceus"])
def test_a_span_empty_twice_is_an_outage_kept_as_a_gap(server, waits, exchange_id):
    # the second page is empty on both asks: an outage span. The source moves past it and
    # fetches the rest; the skipped span stays a gap (never filled), validation counts it
    source = ExchangeSource(exchange_id, api_url=server.api_url, sleep=waits.append)
    server.push(ok(), empty_page(), empty_page())
    start, end = T0, T0 + pd.Timedelta(hours=2500)
    frame = source.fetch("BTC-USDT", "1h", start, end)

    hours = (frame["open_time"] - start) // pd.Timedelta(hours=1)
    assert list(hours) == list(range(1000)) + list(range(2000, 2500))
    truth = expected_frame(server, "BTCUSDT", start, end)
    kept = truth[
        ~truth["open_time"].between(
            start + pd.Timedelta(hours=1000), start + pd.Timedelta(hours=1999)
        )
    ]
    cols = list(OHLCV_COLUMNS[:6])
    pd.testing.assert_frame_equal(frame[cols], kept[cols].reset_index(drop=True))
    starts = [int(r.params["startTime"]) for r in server.requests_to(KLINES)]
    assert starts == [T0_MS, *[T0_MS + 1000 * HOUR_MS] * 2, T0_MS + 2000 * HOUR_MS]


def test_empty_pages_after_now_end_the_range(server, waits):
    # a 1m range reaching 3000 bars past "now" on an exchange paged through fetch_ohlcv: the
    # exchange has nothing after now, and the source stops there instead of walking empty
    # pages to the end of the range
    now = T0 + pd.Timedelta(minutes=500)
    server.now_ms = lambda: now.value // 1_000_000
    source = ExchangeSource(
        "binanceus", api_url=server.api_url, sleep=waits.append, clock=lambda: now
    )
    frame = source.fetch("BTC-USDT", "1m", T0, T0 + pd.Timedelta(minutes=3500))
    assert len(frame) == 500  # the bar opened at "now" is still open
    assert len(server.requests_to(KLINES)) <= 2


def test_gap_is_returned_without_filling(server, source):
    # ten missing hours straddling the 1000-bar page boundary
    missing = {T0_MS + i * HOUR_MS for i in range(995, 1005)}
    server.omitted |= missing
    start, end = T0, T0 + pd.Timedelta(hours=1200)
    frame = source.fetch("BTC-USDT", "1h", start, end)

    everything = pd.date_range(start, end, freq="1h", inclusive="left")
    holes = pd.to_datetime(sorted(missing), unit="ms", utc=True)
    assert list(frame["open_time"]) == list(everything.difference(holes))
    assert len(frame) == 1190
    assert frame.notna().all().all()
    assert_frame_is_servers(frame, server, start, end)


# -- closed bars only -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "n_closed"),
    [
        ("2024-01-02 10:30", 10),  # the 10:00 bar is open: 00:00 .. 09:00 are closed
        ("2024-01-02 10:00", 10),  # the 09:00 bar closes exactly now
        ("2024-01-02 09:59:59.999", 9),
    ],
)
def test_still_open_last_bar_is_dropped(waits, now, n_closed):
    now = pd.Timestamp(now, tz="UTC")
    with BinanceServer(seed=7, now_ms=lambda: now.value // 1_000_000) as server:
        source = ExchangeSource(api_url=server.api_url, sleep=waits.append, clock=lambda: now)
        start = pd.Timestamp("2024-01-02", tz="UTC")
        frame = source.fetch("BTC-USDT", "1h", start, start + pd.Timedelta(days=1))
        served = server.rows("BTCUSDT", "1h", start.value // 1_000_000, now.value // 1_000_000 + 1)
    assert len(served) == n_closed + 1  # the server did send the open bar
    assert list(frame["open_time"]) == list(pd.date_range(start, periods=n_closed, freq="1h"))
    assert frame["open_time"].iloc[-1] + pd.Timedelta(hours=1) <= now


def test_range_with_no_closed_bar_is_out_of_range(server, source):
    with pytest.raises(OutOfRangeError, match="no closed bar"):
        source.fetch("BTC-USDT", "1h", pd.Timestamp("2015-01-01"), pd.Timestamp("2015-01-02"))


# -- retries ----------------------------------------------------------------------------------
def test_429_honours_retry_after_then_delivers(server, source, waits):
    server.push(rate_limited(retry_after=7))
    frame = source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == [7.0]  # Retry-After (7 s) beats the first back-off step (1 s)
    assert [r.fault for r in server.requests_to(KLINES)] == ["429", None]
    assert_frame_is_servers(frame, server, *DAY)


def test_418_honours_retry_after_then_delivers(server, source, waits):
    server.push(banned(retry_after=3))
    frame = source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == [3.0]
    assert_frame_is_servers(frame, server, *DAY)


def test_ban_longer_than_max_backoff_fails_at_once(server, source, waits):
    server.push(banned(retry_after=3600))
    with pytest.raises(ExchangeUnavailableError, match=r"wait 3600 s \(Retry-After\)"):
        source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == []
    assert len(server.requests_to(KLINES)) == 1


def test_5xx_then_success_backs_off_exponentially(server, waits):
    source = ExchangeSource(api_url=server.api_url, sleep=waits.append, backoff_seconds=0.5)
    server.push(server_error(500), server_error(503))
    frame = source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == [0.5, 1.0]
    assert [r.fault for r in server.requests_to(KLINES)] == ["500", "503", None]
    assert_frame_is_servers(frame, server, *DAY)


def test_timeout_then_success(server, waits):
    source = ExchangeSource(api_url=server.api_url, sleep=waits.append, timeout_ms=300)
    server.push(slow(1.0))
    frame = source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == [1.0]
    assert [r.fault for r in server.requests_to(KLINES)] == ["slow", None]
    assert_frame_is_servers(frame, server, *DAY)


def test_persistent_5xx_exhausts_capped_backoff(server, waits):
    source = ExchangeSource(
        api_url=server.api_url,
        sleep=waits.append,
        max_retries=4,
        backoff_seconds=1.0,
        max_backoff_seconds=3.0,
    )
    server.push(*[server_error(500)] * 10)
    with pytest.raises(ExchangeUnavailableError) as err:
        source.fetch("BTC-USDT", "1h", *DAY)
    msg = str(err.value)
    for part in ("binance", "BTC-USDT", "1h", "2024-01-01", "2024-01-02", "after 4 retries"):
        assert part in msg
    assert "ExchangeNotAvailable" in msg and "500" in msg
    assert waits == [1.0, 2.0, 3.0, 3.0]
    assert len(server.requests_to(KLINES)) == 5


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (malformed(), "not a JSON array of rows.*upstream proxy error"),
        (short_rows(5), "not a 12-field array"),
    ],
)
def test_malformed_body_ends_in_clear_error(server, source, waits, fault, message):
    server.push(fault, fault, fault)
    with pytest.raises(MalformedResponseError, match=message) as err:
        source.fetch("BTC-USDT", "1h", *DAY)
    assert isinstance(err.value, ExchangeUnavailableError)
    assert "binance BTC-USDT 1h" in str(err.value)
    assert len(server.requests_to(KLINES)) == 3  # two retries, then the error
    assert len(waits) == 2


def test_one_malformed_body_is_retried(server, source, waits):
    server.push(malformed())
    frame = source.fetch("BTC-USDT", "1h", *DAY)
    assert waits == [1.0]
    assert_frame_is_servers(frame, server, *DAY)


def test_unreachable_exchange(waits):
    port = closed_port()
    source = ExchangeSource(
        api_url=f"http://127.0.0.1:{port}/api/v3", sleep=waits.append, max_retries=2
    )
    with pytest.raises(ExchangeUnavailableError, match="NetworkError") as err:
        source.fetch("BTC-USDT", "1h", *DAY)
    assert "binance BTC-USDT 1h" in str(err.value) and "loading markets" in str(err.value)
    assert waits == [1.0, 2.0]


def test_retry_after_http_date():
    now = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    date = email.utils.format_datetime((now + pd.Timedelta(seconds=30)).to_pydatetime(), True)
    assert _retry_after({"Retry-After": date}, now) == 30.0
    assert _retry_after({"Retry-After": "12"}, now) == 12.0
    assert _retry_after({}, now) is None


# -- requests that cannot be served -----------------------------------------------------------
def test_unknown_symbol(server, source):
    with pytest.raises(UnknownSymbolError, match="DOGE/USDT"):
        source.fetch("DOGE-USDT", "1h", *DAY)
    assert server.requests_to(KLINES) == []


def test_symbol_not_shaped_as_key(server, source):
    with pytest.raises(UnknownSymbolError, match="BTCUSDT"):
        source.fetch("BTCUSDT", "1h", *DAY)
    assert server.requests == []


def test_interval_outside_intervals(server, source):
    with pytest.raises(UnsupportedIntervalError, match="7m"):
        source.fetch("BTC-USDT", "7m", *DAY)
    assert server.requests == []


def test_interval_the_exchange_does_not_offer():
    # kraken has no 3m candles (ccxt's static metadata): refused before any request
    source = ExchangeSource("kraken", api_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UnsupportedIntervalError, match="kraken has no '3m'"):
        source.fetch("BTC-USD", "3m", *DAY)


@pytest.mark.parametrize("end", [T0, T0 - pd.Timedelta(hours=1)])
def test_empty_range(server, source, end):
    with pytest.raises(EmptyRangeError):
        source.fetch("BTC-USDT", "1h", T0, end)
    assert server.requests == []


def test_unknown_exchange_id():
    with pytest.raises(SourceError, match="nosuchexchange"):
        ExchangeSource("nosuchexchange")


# -- other exchanges: unified fetch_ohlcv, no quote volume or trades -------------------------
def test_non_binance_exchange_uses_fetch_ohlcv(server, waits):
    source = ExchangeSource("binanceus", api_url=server.api_url, sleep=waits.append)
    start, end = T0, T0 + pd.Timedelta(hours=1500)
    frame = source.fetch("BTC-USDT", "1h", start, end)
    truth = expected_frame(server, "BTCUSDT", start, end)
    pd.testing.assert_frame_equal(frame[list(OHLCV_COLUMNS[:6])], truth[list(OHLCV_COLUMNS[:6])])
    assert frame["quote_volume"].isna().all() and frame["trades"].isna().all()
    assert len(server.requests_to(KLINES)) == 2
