"""The exchange misbehaves while a run fetches 45 days (two pages). Transient faults are
retried within the run and every bar lands once; faults that outlast the retry budget fail
the run before anything is written, and the stored days stay as they were."""

from __future__ import annotations

import pandas as pd
import pytest

from clm_assets.settings import Settings
from clm_assets.sources.base import ExchangeUnavailableError
from clm_assets_tests.faults.conftest import FIRST, LAST, run, servers_bars, stored
from clm_assets_tests.sources.binance_server import (
    BinanceServer,
    Fault,
    banned,
    connection_reset,
    empty_page,
    ok,
    rate_limited,
    server_error,
    truncated_body,
)

COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]
TRANSIENT = {
    "429, then 200 (Retry-After 1 s honoured)": ([rate_limited(1)], 1.0),
    "418 with Retry-After 2 s (a short ban), then 200": ([banned(2)], 2.0),
    "a burst of 5xx (502, 503), then 200": ([server_error(502), server_error(503)], 3.0),
    "a truncated body (half the page, then the connection closes)": ([truncated_body()], 1.0),
    "a connection reset (RST) in the middle of the second page": ([ok(), connection_reset()], 1.0),
    "an empty page in the middle of the range": ([ok(), empty_page()], 0.0),
}


@pytest.mark.parametrize("faults, waited", TRANSIENT.values(), ids=list(TRANSIENT))
def test_a_transient_fault_is_retried_and_every_bar_lands_once(
    deployment: Settings, exchange: BinanceServer, faults: list[Fault], waited: float
) -> None:
    exchange.push(*faults)
    result = run(deployment)
    assert result.success
    bars = stored(deployment)
    assert not bars.duplicated(["symbol", "open_time"]).any()
    pd.testing.assert_frame_equal(bars[COLUMNS], servers_bars(exchange, FIRST, LAST))
    answered = [r for r in exchange.requests if r.path.endswith("klines")]
    assert [r.fault for r in answered[: len(faults)]] == [f.kind for f in faults]
    assert answered[-1].at - answered[0].at >= waited  # the waits were slept, not skipped


PERSISTENT = {
    "5xx on every attempt": [server_error(503)] * 3,
    "a connection reset on every attempt of the second page": [ok(), *[connection_reset()] * 3],
}


@pytest.mark.parametrize("faults", PERSISTENT.values(), ids=list(PERSISTENT))
def test_a_fault_beyond_the_retry_budget_fails_the_run_and_writes_nothing(
    deployment: Settings, exchange: BinanceServer, faults: list[Fault]
) -> None:
    before = stored(deployment)
    exchange.push(*faults)
    with pytest.raises(
        ExchangeUnavailableError, match=r"binance BTC-USDT 1h .*still failing after 2 retries"
    ):
        run(deployment)
    pd.testing.assert_frame_equal(stored(deployment), before)
