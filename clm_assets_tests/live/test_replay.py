"""The replay exchange, read over real HTTP by the production client (``ExchangeSource`` via
ccxt) and by raw requests: same bars as the source, only what the virtual clock has closed,
Binance's time endpoint and error bodies, and the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import ccxt
import numpy as np
import pandas as pd
import pytest

from clm_assets.live.replay import ReplayExchange, VirtualClock, build_source, market_of
from clm_assets.sources.base import EmptyRangeError
from clm_assets.sources.exchange import ExchangeSource
from clm_assets.sources.sample import SampleSource
from clm_assets.sources.synthetic import EPOCH, PlantedSignal, SyntheticSource

HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2024-03-01 00:30", tz="UTC")
"""Virtual time at launch: half an hour into the 00:00 bar, which is still forming."""
SOURCE = SyntheticSource(seed=3, signal=PlantedSignal(0.3, flip_at=pd.Timestamp("2024-02-20")))


class SettableTime:
    """A real clock (seconds) that only moves when a test says so."""

    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def real_time() -> SettableTime:
    return SettableTime()


@pytest.fixture
def clock(real_time: SettableTime) -> VirtualClock:
    return VirtualClock(START, speed=3600.0, real_time=real_time)  # 1 real s = 1 bar


@pytest.fixture
def replay(clock: VirtualClock) -> Iterator[ReplayExchange]:
    with ReplayExchange(SOURCE, ["BTC-USDT", "ETH-USDT"], "1h", clock, (EPOCH, None)) as server:
        yield server


def get(url: str) -> tuple[int, object]:
    """Status and JSON body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def assert_same_bars(served: pd.DataFrame, truth: pd.DataFrame) -> None:
    """Equal up to the 8 decimals of Binance's price strings; counts exactly."""
    pd.testing.assert_series_equal(served["open_time"], truth["open_time"])
    for col in ("open", "high", "low", "close", "volume", "quote_volume"):
        np.testing.assert_allclose(served[col], truth[col], rtol=1e-12, atol=5e-9, err_msg=col)
    pd.testing.assert_series_equal(served["trades"], truth["trades"])


def test_exchange_source_reads_the_source_bars(replay: ReplayExchange, clock: VirtualClock) -> None:
    """Two months through ccxt (two 1000-bar pages and a short one) equal the source's."""
    client = ExchangeSource(api_url=replay.api_url, clock=clock.now)
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    assert_same_bars(
        client.fetch("BTC-USDT", "1h", start, end), SOURCE.fetch("BTC-USDT", "1h", start, end)
    )
    eth = client.fetch("ETH-USDT", "1h", end - pd.Timedelta(days=1), end)
    assert_same_bars(eth, SOURCE.fetch("ETH-USDT", "1h", end - pd.Timedelta(days=1), end))


def test_only_closed_bars_and_new_ones_appear_as_the_clock_runs(
    replay: ReplayExchange, clock: VirtualClock, real_time: SettableTime
) -> None:
    client = ExchangeSource(api_url=replay.api_url, clock=clock.now)
    day = (pd.Timestamp("2024-02-29 12:00", tz="UTC"), pd.Timestamp("2024-03-02", tz="UTC"))
    assert client.fetch("BTC-USDT", "1h", *day)["open_time"].iloc[-1] == START.floor("h") - HOUR
    real_time.seconds += 2.5  # 2.5 virtual hours: now 03:00, bars 00:00, 01:00, 02:00 closed
    bars = client.fetch("BTC-USDT", "1h", *day)
    assert bars["open_time"].iloc[-1] == pd.Timestamp("2024-03-01 02:00", tz="UTC")
    assert_same_bars(bars, SOURCE.fetch("BTC-USDT", "1h", day[0], clock.now()))


class GappySource:
    """``SOURCE`` with an outage: no bars in ``[GAP_START, GAP_END)``."""

    name = "synthetic-with-outage"

    def fetch(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        bars = SOURCE.fetch(symbol, interval, start, end)
        kept = bars[~bars["open_time"].between(GAP_START, GAP_END, inclusive="left")]
        if kept.empty:
            raise EmptyRangeError(f"[{start}, {end}) lies in the outage")
        return kept.reset_index(drop=True)


GAP_START = pd.Timestamp("2023-10-10", tz="UTC")
GAP_END = GAP_START + 1200 * HOUR  # longer than a page


def test_pages_are_filled_across_an_outage(clock: VirtualClock) -> None:
    """A page skips the missing bars instead of coming back short (which a client reads as
    the end of the data), and the outage stays a gap."""
    start, end = pd.Timestamp("2023-10-01", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC")
    with ReplayExchange(GappySource(), ["BTC-USDT"], "1h", clock, (EPOCH, None)) as server:
        status, rows = get(
            f"{server.api_url}/klines?symbol=BTCUSDT&interval=1h&limit=1000"
            f"&startTime={start.value // 1_000_000}"
        )
        bars = ExchangeSource(api_url=server.api_url, clock=clock.now).fetch(
            "BTC-USDT", "1h", start, end
        )
    assert status == 200 and len(rows) == 1000
    assert_same_bars(bars, GappySource().fetch("BTC-USDT", "1h", start, end))
    assert len(bars) == (end - start) // HOUR - 1200


def test_klines_serve_the_forming_bar_like_binance(
    replay: ReplayExchange, real_time: SettableTime
) -> None:
    """Without ``startTime``: the newest ``limit`` bars, the last one holding "now"."""
    status, rows = get(f"{replay.api_url}/klines?symbol=BTCUSDT&interval=1h&limit=3")
    assert status == 200
    forming = START.floor("h").value // 1_000_000
    assert [r[0] for r in rows] == [forming - 2 * 3_600_000, forming - 3_600_000, forming]
    assert [r[6] for r in rows] == [r[0] + 3_599_999 for r in rows]
    assert all(r[9] is None and r[10] is None and r[11] == "0" for r in rows)  # not known
    real_time.seconds += 1.0
    status, rows = get(f"{replay.api_url}/klines?symbol=BTCUSDT&interval=1h&startTime={forming}")
    assert [r[0] for r in rows] == [forming, forming + 3_600_000]  # never past "now"


def test_time_is_the_virtual_now(
    replay: ReplayExchange, clock: VirtualClock, real_time: SettableTime
) -> None:
    """``/api/v3/time`` as raw JSON and through ccxt's ``fetch_time`` (what sensors call)."""
    assert get(f"{replay.api_url}/time") == (200, {"serverTime": START.value // 1_000_000})
    exchange = ccxt.binance({"options": {"defaultType": "spot"}})
    exchange.urls["api"]["public"] = replay.api_url
    real_time.seconds += 0.25
    assert (
        exchange.fetch_time()
        == clock.now_ms()
        == (START + 15 * pd.Timedelta(minutes=1)).value // 1_000_000
    )
    assert get(f"{replay.api_url}/ping") == (200, {})


def test_exchange_info_lists_the_symbols(replay: ReplayExchange) -> None:
    exchange = ccxt.binance(
        {"options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}}
    )
    exchange.urls["api"]["public"] = replay.api_url
    exchange.load_markets()
    assert sorted(exchange.markets) == ["BTC/USDT", "ETH/USDT"]
    assert exchange.market("BTC/USDT")["id"] == "BTCUSDT"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("interval=1h", -1102),
        ("symbol=SOLUSDT&interval=1h", -1121),
        ("symbol=BTCUSDT&interval=4h", -1120),  # not the interval served
        ("symbol=BTCUSDT&interval=1h&limit=1001", -1130),
        ("symbol=BTCUSDT&interval=1h&limit=x", -1100),
        ("symbol=BTCUSDT&interval=1h&startTime=2&endTime=1", -1023),
    ],
)
def test_bad_parameters_get_binance_errors(replay: ReplayExchange, query: str, code: int) -> None:
    status, body = get(f"{replay.api_url}/klines?{query}")
    assert status == 400
    assert body["code"] == code


def test_before_the_listing_and_unknown_paths(replay: ReplayExchange) -> None:
    before = (EPOCH - pd.Timedelta(days=1)).value // 1_000_000
    status, rows = get(
        f"{replay.api_url}/klines?symbol=BTCUSDT&interval=1h&startTime={before - 86_400_000}"
        f"&endTime={before}"
    )
    assert (status, rows) == (200, [])
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{replay.api_url}/depth", timeout=5)


def test_sample_is_served_as_btcusd_with_unknown_trades_null() -> None:
    source, coverage = build_source("sample", 7, None, None)
    end = coverage[1]
    clock = VirtualClock(end + pd.Timedelta(days=30), speed=1.0)  # past the data's end
    with ReplayExchange(source, ["BTC-USD"], "1h", clock, coverage) as server:
        status, rows = get(f"{server.api_url}/klines?symbol=BTCUSD&interval=1h&limit=24")
    assert status == 200
    truth = SampleSource().fetch("BTC-USD", "1h", end - pd.Timedelta(days=1), end)
    assert [r[0] for r in rows] == list(truth["open_time"].astype("int64") // 1_000_000)
    np.testing.assert_allclose([float(r[4]) for r in rows], truth["close"], atol=5e-9)
    assert all(r[8] is None for r in rows)  # Coinbase candles carry no trade count


def test_market_and_source_arguments() -> None:
    assert market_of("BTC-USD").symbol == "BTCUSD"
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        market_of("BTCUSDT")
    with pytest.raises(ValueError, match="synthetic"):
        build_source("sample", 7, 0.2, None)
    with pytest.raises(ValueError, match="signal-strength"):
        build_source("synthetic", 7, None, pd.Timestamp("2024-01-01"))
    planted, _ = build_source("synthetic", 7, 0.2, pd.Timestamp("2024-01-01"))
    assert planted.name.startswith("synthetic+signal(strength=0.2,")
    with pytest.raises(ValueError, match="speed"):
        VirtualClock(START, speed=0.0)


def test_command_line_prints_the_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clm_assets.live.replay",
            "--source=synthetic",
            "--start=2024-01-01T00:00",
            "--speed=720",
            "--signal-strength=0.2",
            "--flip-at=2024-02-01",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("replay exchange: http://127.0.0.1:")
        assert "source=synthetic+signal(strength=0.2,phase=14,flip=2024-02-01T00:00:00Z)" in line
        api_url = line.split()[2]
        status, body = get(f"{api_url}/time")
        assert status == 200
        assert body["serverTime"] >= pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()
