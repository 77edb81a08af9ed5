"""Closed candles from a live exchange through ccxt, paginated, retried, never filled.

``ExchangeSource`` implements ``MarketDataSource`` (see ``base.py``):

* Symbol keys are ``"BASE-QUOTE"`` (``"BTC-USDT"``) and map to ccxt's ``"BTC/USDT"``; a symbol
  the exchange does not list is an ``UnknownSymbolError``.
* The ccxt client is built on the first ``fetch`` (spot markets only, ``enableRateLimit``) and
  loads the markets once.
* A range is fetched in pages of at most 1000 bars; each page starts one interval after the
  last bar received, and a page that does not move forward is an error, never a loop. An
  empty page before the end of the range (and before now) does not end it: the next page
  starts after the empty page's span, whose bars stay missing (a gap for validation to
  count, never filled).
* Bars whose ``open_time + interval`` is later than ``clock()`` are still open and dropped.
* Missing bars (exchange outages) stay missing: nothing is padded or interpolated.

Where ``quote_volume`` and ``trades`` come from
    ccxt's unified ``fetch_ohlcv`` keeps only 6 fields. For ``exchange_id="binance"`` the
    source therefore calls the implicit endpoint ``publicGetKlines`` (``GET /api/v3/klines``)
    itself — the very request ``fetch_ohlcv`` makes, with ``symbol, interval, startTime,
    endTime, limit`` — and parses the raw 12-field rows (decimal strings): ``quote_volume`` is
    field 7, ``trades`` field 8. Every other exchange goes through ``fetch_ohlcv`` and reports
    ``quote_volume`` and ``trades`` as nulls (never zeros).

Retries
    Rate limits (HTTP 429/418: ccxt ``DDoSProtection`` / ``RateLimitExceeded``), 5xx
    (``ExchangeNotAvailable`` / ``OnMaintenance``), timeouts (``RequestTimeout``) and other
    network failures (``NetworkError``: connection refused or reset) are retried up to
    ``max_retries`` times after the first attempt. The wait before retry ``n`` (1-based) is
    ``min(max_backoff_seconds, backoff_seconds * 2 ** (n - 1))``, or the response's
    ``Retry-After`` (seconds or an HTTP date) when that is longer. A ``Retry-After`` longer than
    ``max_backoff_seconds`` (a Binance IP ban lasts minutes to days) is not slept through: the
    source raises ``ExchangeUnavailableError`` at once instead of retrying early. All waits go
    through the injectable ``sleep``. When the budget is spent the source raises
    ``ExchangeUnavailableError`` naming the exchange, symbol, interval, range and last error.

    A body that is not what the endpoint promises (not JSON, rows of the wrong shape or
    content) is retried at most ``MAX_MALFORMED_RETRIES`` times (within the same budget), then
    raises ``MalformedResponseError`` — a subclass of ``ExchangeUnavailableError``, so callers
    catching the latter see it too. Partial data is never returned after an error.

    Errors the exchange states as final (``BadSymbol`` → ``UnknownSymbolError``, any other
    ``ExchangeError`` such as a rejected parameter → ``SourceError``) are not retried.

    ccxt's own rate limiter (``enableRateLimit``) still spaces requests by the endpoint's
    weight (50 ms per unit for Binance; a 1000-bar klines page weighs 5) with real sleeps.

Threads
    One instance per thread: the retry logic reads the shared client's last response headers.

Empty results
    A range in which the exchange delivers no closed bar at all (before listing, inside an
    outage, not closed yet) raises ``OutOfRangeError`` rather than returning an empty frame.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from clm_assets.sources.base import (
    ExchangeUnavailableError,
    OutOfRangeError,
    SourceError,
    UnknownSymbolError,
    UnsupportedIntervalError,
    check_range,
    to_canonical,
)
from clm_assets.sources.intervals import interval_delta

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000
"""Most bars asked for per request (Binance spot's maximum)."""

MAX_MALFORMED_RETRIES = 2
"""Retries granted to a malformed body before it is reported (a proxy hiccup may pass)."""

_RAW_KLINES_EXCHANGES = frozenset({"binance"})
"""Exchanges fetched through the raw ``publicGetKlines`` rows (with quote volume, trades)."""

_BINANCE_ROW_FIELDS = 12


class MalformedResponseError(ExchangeUnavailableError):
    """The exchange answered with a body that is not the documented format."""


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def ccxt_symbol(symbol: str) -> str:
    """``"BTC-USDT"`` → ``"BTC/USDT"``; anything not shaped ``BASE-QUOTE`` is unknown."""
    parts = symbol.split("-")
    if len(parts) != 2 or not all(parts):
        raise UnknownSymbolError(f"symbol {symbol!r} is not a 'BASE-QUOTE' key such as 'BTC-USDT'")
    return f"{parts[0]}/{parts[1]}"


class ExchangeSource:
    """Closed OHLCV candles of one ccxt exchange's spot markets (see the module docstring)."""

    name = "exchange"

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        timeout_ms: int = 10_000,
        api_url: str | None = None,
        clock: Callable[[], pd.Timestamp] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if exchange_id not in ccxt.exchanges:
            raise SourceError(f"ccxt has no exchange {exchange_id!r}")
        if max_retries < 0 or backoff_seconds < 0 or max_backoff_seconds < 0 or timeout_ms <= 0:
            raise ValueError(
                "max_retries, backoff_seconds and max_backoff_seconds must be >= 0 and "
                f"timeout_ms > 0; got {max_retries}, {backoff_seconds}, "
                f"{max_backoff_seconds}, {timeout_ms}"
            )
        self.exchange_id = exchange_id
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_ms = timeout_ms
        self.api_url = api_url
        self.clock = clock
        self.sleep = sleep
        self._exchange: ccxt.Exchange | None = None
        self._markets_loaded = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = f", api_url={self.api_url!r}" if self.api_url else ""
        return f"ExchangeSource({self.exchange_id!r}{where})"

    # -- public ---------------------------------------------------------------------------
    def server_time(self) -> pd.Timestamp:
        """The exchange's own clock (Binance ``/api/v3/time``): which bars have closed is
        the exchange's call, and a replay exchange runs a virtual clock."""
        exchange = self._client()
        ms = self._with_retries(f"{self.exchange_id} server time", exchange.fetch_time)
        return pd.Timestamp(int(ms), unit="ms", tz="UTC")

    def fetch(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Closed candles of ``symbol`` with opens in ``[start, end)``, ascending, gaps kept."""
        start, end = check_range(start, end)
        step = interval_delta(interval)
        market_symbol = ccxt_symbol(symbol)
        what = f"{self.exchange_id} {symbol} {interval} [{start}, {end})"

        exchange = self._client()
        if interval not in (exchange.timeframes or {}):
            raise UnsupportedIntervalError(
                f"{self.exchange_id} has no {interval!r} candles; it offers: "
                f"{', '.join(exchange.timeframes or {})}"
            )
        self._load_markets(what)
        if market_symbol not in exchange.markets:
            raise UnknownSymbolError(
                f"{self.exchange_id} lists no spot market {market_symbol!r} (symbol {symbol!r})"
            )
        market = exchange.market(market_symbol)

        raw = self.exchange_id in _RAW_KLINES_EXCHANGES
        step_ms = int(step.value // 1_000_000)
        start_ms, end_ms = _ms(start), _ms(end)
        page_limit = PAGE_LIMIT if raw else self._ohlcv_limit()
        newest_open = _ms(self.clock()) - step_ms  # the newest bar that can be closed now
        pages: list[pd.DataFrame] = []
        since = start_ms
        asked_again: int | None = None
        while since < end_ms:
            if raw:
                received = self._with_retries(
                    what,
                    lambda since=since: _parse_binance_rows(
                        exchange.publicGetKlines(
                            {
                                "symbol": market["id"],
                                "interval": exchange.timeframes[interval],
                                "startTime": since,
                                "endTime": end_ms - 1,  # Binance: inclusive, on bar open
                                "limit": PAGE_LIMIT,
                            }
                        ),
                        step_ms,
                    ),
                )
            else:
                received = self._with_retries(
                    what,
                    lambda since=since: self._ohlcv_page(
                        market_symbol, interval, since, page_limit
                    ),
                )
            if received.empty:
                # No bar in this page's span: a hiccup, an outage, or an exchange that pages
                # by time. Not the end of the range. Ask once more after the first back-off
                # step (a hiccup then delivers); empty twice is an outage: move past the
                # span, and what it held stays a gap that validation reports.
                if since > newest_open:
                    break  # nothing from here on can be closed yet
                if since != asked_again:
                    asked_again = since
                    log.warning("%s: empty page from %d ms; asking again", what, since)
                    self.sleep(self.backoff_seconds)
                    continue
                since += page_limit * step_ms
                if since > newest_open:
                    break  # nothing after now can be closed
                continue
            page = received[received["open_time"] >= since]
            if page.empty:  # the exchange ignored ``since``: stop rather than loop or truncate
                raise SourceError(
                    f"{what}: a page asked from {since} ms returned only earlier bars (last "
                    f"{int(received['open_time'].iloc[-1])} ms); pagination cannot advance"
                )
            last = int(page["open_time"].iloc[-1])
            log.debug("%s: %d bars from %d ms to %d ms", what, len(page), since, last)
            pages.append(page)
            since = last + step_ms
            if raw and len(received) < PAGE_LIMIT:
                break  # Binance fills a page up to ``limit`` unless ``endTime``/now is reached

        frame = (
            pd.concat(pages, ignore_index=True)
            if pages
            else pd.DataFrame({"open_time": pd.Series([], dtype="int64")})
        )
        now = self.clock()
        closed_before = _ms(now) - step_ms  # a bar is closed once open + step <= now
        keep = (frame["open_time"] >= start_ms) & (frame["open_time"] < end_ms)
        keep &= frame["open_time"] <= closed_before
        frame = frame[keep]
        if frame.empty:
            raise OutOfRangeError(
                f"{what}: the exchange delivered no closed bar in the range (now "
                f"{now}); the market may not be listed yet, be halted, or the range "
                "may not have closed"
            )
        frame = frame.assign(open_time=pd.to_datetime(frame["open_time"], unit="ms", utc=True))
        return to_canonical(frame.reset_index(drop=True))

    # -- client ---------------------------------------------------------------------------
    def _client(self) -> ccxt.Exchange:
        """The ccxt client, built on first use (no network)."""
        with self._lock:
            if self._exchange is None:
                exchange = getattr(ccxt, self.exchange_id)(
                    {
                        "enableRateLimit": True,
                        "enableLastJsonResponse": True,  # to tell a non-JSON body from no bars
                        "timeout": self.timeout_ms,
                        "options": {
                            "defaultType": "spot",
                            "fetchMarkets": {"types": ["spot"]},
                        },
                    }
                )
                if self.api_url is not None:
                    api = exchange.urls.get("api")
                    if not isinstance(api, dict) or "public" not in api:
                        raise SourceError(
                            f"api_url override needs urls['api']['public'] in ccxt's "
                            f"{self.exchange_id}; it has {api!r}"
                        )
                    api["public"] = self.api_url
                    api["private"] = self.api_url
                self._exchange = exchange
            return self._exchange

    def _load_markets(self, what: str) -> None:
        """Load the exchange's markets once per source (retried like any request)."""
        with self._lock:
            if not self._markets_loaded:
                self._with_retries(f"{what} (loading markets)", self._exchange.load_markets)
                self._markets_loaded = True

    def _ohlcv_limit(self) -> int:
        """Bars per unified ``fetch_ohlcv`` page: ours, or the exchange's cap if lower."""
        exchange = self._exchange
        assert exchange is not None
        features = (exchange.features or {}).get("spot") or {}
        cap = (features.get("fetchOHLCV") or {}).get("limit")
        return min(PAGE_LIMIT, int(cap)) if cap else PAGE_LIMIT

    def _ohlcv_page(
        self, market_symbol: str, interval: str, since: int, limit: int
    ) -> pd.DataFrame:
        """One unified ``fetch_ohlcv`` page (exchanges other than Binance)."""
        exchange = self._exchange
        assert exchange is not None
        exchange.last_json_response = None
        rows = exchange.fetch_ohlcv(market_symbol, interval, since, limit)
        # ccxt parses a non-JSON body character by character into nothing: refuse that.
        if exchange.last_json_response is None:
            raise MalformedResponseError(
                f"OHLCV body is not JSON: {str(exchange.last_http_response)[:200]!r}"
            )
        return _parse_ohlcv_rows(rows)

    # -- retries --------------------------------------------------------------------------
    def _with_retries(self, what: str, call: Callable[[], Any]) -> Any:
        assert self._exchange is not None
        exchange = self._exchange
        retries = malformed = 0
        while True:
            exchange.last_response_headers = None  # never read a previous response's headers
            try:
                return call()
            except ccxt.BadSymbol as exc:
                raise UnknownSymbolError(f"{what}: the exchange rejects the symbol: {exc}") from exc
            except (MalformedResponseError, ccxt.BadResponse) as exc:
                malformed += 1
                error: Exception = exc
                if malformed > MAX_MALFORMED_RETRIES or retries >= self.max_retries:
                    raise MalformedResponseError(
                        f"{what}: malformed response from {self.exchange_id} "
                        f"({malformed} in a row): {exc}"
                    ) from exc
                retry_after = None
            except ccxt.OperationFailed as exc:  # NetworkError: 429/418, 5xx, timeouts, refused
                error = exc
                retry_after = _retry_after(exchange.last_response_headers, _utc_now())
            except ccxt.ExchangeError as exc:  # the exchange refused the request for good
                raise SourceError(
                    f"{what}: {self.exchange_id} rejected the request: {exc}"
                ) from exc

            retries += 1
            if retries > self.max_retries:
                raise ExchangeUnavailableError(
                    f"{what}: {self.exchange_id} still failing after {self.max_retries} "
                    f"retries; last error {type(error).__name__}: {error}"
                ) from error
            delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (retries - 1))
            if retry_after is not None:
                if retry_after > self.max_backoff_seconds:
                    raise ExchangeUnavailableError(
                        f"{what}: {self.exchange_id} asks to wait {retry_after:g} s "
                        f"(Retry-After), more than max_backoff_seconds="
                        f"{self.max_backoff_seconds:g}; last error "
                        f"{type(error).__name__}: {error}"
                    ) from error
                delay = max(delay, retry_after)
            log.warning(
                "%s: %s: %s; retry %d/%d in %.3g s",
                what,
                type(error).__name__,
                error,
                retries,
                self.max_retries,
                delay,
            )
            self.sleep(delay)


def _retry_after(headers: Any, now: pd.Timestamp) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            log.warning("ignoring unparseable Retry-After header %r", value)
            return None
        seconds = (pd.Timestamp(when) - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _parse_binance_rows(body: Any, step_ms: int) -> pd.DataFrame:
    """Binance ``/api/v3/klines`` rows → columns; anything off-format is malformed."""
    if not isinstance(body, list):
        raise MalformedResponseError(
            f"klines body is not a JSON array of rows: {str(body)[:200]!r}"
        )
    for i, row in enumerate(body):
        if not isinstance(row, list) or len(row) != _BINANCE_ROW_FIELDS:
            raise MalformedResponseError(
                f"klines row {i} is not a {_BINANCE_ROW_FIELDS}-field array: {str(row)[:200]}"
            )
    if not body:
        return pd.DataFrame({"open_time": pd.Series([], dtype="int64")})
    try:
        times = np.array([[r[0], r[6]] for r in body], dtype=object)
        if not all(type(v) is int for v in times.ravel()):
            raise ValueError("open time and close time must be integers")
        # a null trade count is unknown, kept null (a replay of data without counts)
        if not all(type(r[8]) is int or r[8] is None for r in body):
            raise ValueError("trades must be integers or null")
        values = np.array([[r[1], r[2], r[3], r[4], r[5], r[7]] for r in body], dtype=str)
        numbers = values.astype("float64")
    except ValueError as exc:
        raise MalformedResponseError(f"klines rows do not hold numbers: {exc}") from exc
    opens = times[:, 0].astype("int64")
    if np.any(np.diff(opens) <= 0):
        raise MalformedResponseError("klines rows are not strictly ascending by open time")
    bad = times[:, 1].astype("int64") != opens + step_ms - 1
    if bad.any():
        i = int(np.argmax(bad))
        raise MalformedResponseError(
            f"klines row {i} (open {opens[i]}) closes at {times[i, 1]}, not one interval "
            f"({step_ms} ms) later"
        )
    if not np.isfinite(numbers).all():
        raise MalformedResponseError("klines rows hold non-finite numbers")
    return pd.DataFrame(
        {
            "open_time": opens,
            "open": numbers[:, 0],
            "high": numbers[:, 1],
            "low": numbers[:, 2],
            "close": numbers[:, 3],
            "volume": numbers[:, 4],
            "quote_volume": numbers[:, 5],
            "trades": pd.array([r[8] for r in body], dtype="Int64"),
        }
    )


def _parse_ohlcv_rows(rows: Any) -> pd.DataFrame:
    """ccxt unified ``[ts, o, h, l, c, v]`` rows → columns (no quote volume, no trades)."""
    if not isinstance(rows, list) or not all(
        isinstance(r, list) and len(r) == 6 and all(v is not None for v in r) for r in rows
    ):
        raise MalformedResponseError(
            f"fetch_ohlcv did not return complete [ts, o, h, l, c, v] rows: {str(rows)[:200]}"
        )
    if not rows:
        return pd.DataFrame({"open_time": pd.Series([], dtype="int64")})
    arr = np.asarray(rows, dtype="float64")
    opens = arr[:, 0].astype("int64")
    if np.any(np.diff(opens) <= 0):
        raise MalformedResponseError("fetch_ohlcv rows are not strictly ascending by time")
    return pd.DataFrame(
        {
            "open_time": opens,
            "open": arr[:, 1],
            "high": arr[:, 2],
            "low": arr[:, 3],
            "close": arr[:, 4],
            "volume": arr[:, 5],
        }
    )
