"""A real loopback HTTP server speaking the Binance spot REST subset that ccxt uses.

``ExchangeSource`` is tested against this server over real HTTP (ccxt → requests → socket),
so pagination, status codes, headers, timeouts and bodies are exercised end to end. The
server is a test fixture only; nothing in ``clm_assets`` ever reads from it.

Endpoints (semantics of the real API, see ``shared/FACTS.md``; the formats come from
``clm_assets.live.binance_format``, shared with the replay exchange):

* ``GET /api/v3/exchangeInfo`` — the fields ccxt's ``binance.fetch_markets`` /
  ``parse_market`` read, for the spot symbols ``BTCUSDT`` and ``ETHUSDT``.
* ``GET /api/v3/klines`` — ``symbol, interval, startTime, endTime, limit`` (default 500, max
  1000); 12-field rows ``[openTime, open, high, low, close, volume, closeTime, quoteVolume,
  trades, takerBuyBase, takerBuyQuote, "0"]`` with decimal strings, ascending; bars whose open
  is in ``[startTime, endTime]``, never before the listing nor after the bar holding "now";
  Binance error bodies (``{"code": -1121, "msg": "Invalid symbol."}`` …) for bad parameters.

Every response carries ``X-MBX-USED-WEIGHT-1M`` (weight used in the current minute: 20 per
``exchangeInfo``, 2 per ``klines``).

Bars come from a seeded random walk defined from each symbol's listing time, so any range,
asked for in any pagination, yields the same bars (``rows`` gives the truth to compare with).

Scripted faults (``push``) apply, in order, to the next requests of one path; ``omitted`` is a
set of bar open times (ms) that every klines response leaves out, like an exchange outage.
Each request is recorded (``requests``) with its path, parameters, arrival time and the fault
that answered it.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from clm_assets.live.binance_format import (
    EXCHANGE_INFO,
    INTERVAL_MS,
    KLINES,
    BinanceError,
    BinanceHandler,
    LoopbackServer,
    Market,
    exchange_info,
    kline_row,
    parse_klines_query,
)

_BLOCK = 4096  # bars per independently seeded block of the walk


@dataclass(frozen=True)
class Listing:
    base: str
    quote: str
    listed_ms: int  # first bar open (midnight UTC, so aligned to every interval)
    first_price: float


LISTINGS: dict[str, Listing] = {
    "BTCUSDT": Listing("BTC", "USDT", 1_502_928_000_000, 4_261.48),  # 2017-08-17
    "ETHUSDT": Listing("ETH", "USDT", 1_502_928_000_000, 301.13),
}


@dataclass(frozen=True)
class Fault:
    """How the server answers one request instead of (or before) its normal answer."""

    kind: str
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    body: str | None = None
    content_type: str = "application/json"
    row_fields: int | None = None
    start_ms: int | None = None
    edit: Callable[[list[list]], list[list]] | None = None


def ok() -> Fault:
    """Answer normally (to let requests through ahead of a later fault)."""
    return Fault("ok")


def rate_limited(retry_after: int) -> Fault:
    """HTTP 429 as Binance sends it when the request weight limit is exceeded."""
    msg = (
        "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    )
    return Fault("429", 429, str(retry_after), body=json.dumps({"code": -1003, "msg": msg}))


def banned(retry_after: int) -> Fault:
    """HTTP 418: the IP is auto-banned for continuing to send requests after 429s."""
    msg = "Way too much request weight used; IP banned until 1700000000000."
    return Fault("418", 418, str(retry_after), body=json.dumps({"code": -1003, "msg": msg}))


def server_error(status: int = 500) -> Fault:
    """A 5xx from Binance's side, with the plain body of a gateway error."""
    return Fault(
        str(status), status, body=f"{status} Internal Server Error", content_type="text/html"
    )


def slow(delay_s: float) -> Fault:
    """Answer normally, but only after ``delay_s`` seconds."""
    return Fault("slow", delay_s=delay_s)


def malformed(body: str = "<html><body>upstream proxy error</body></html>") -> Fault:
    """HTTP 200 whose body is not the JSON the endpoint promises."""
    return Fault("malformed", body=body, content_type="text/html")


def short_rows(fields: int = 5) -> Fault:
    """HTTP 200 with valid JSON rows cut to ``fields`` fields each (a wrong-shape body)."""
    return Fault("short_rows", row_fields=fields)


def empty_page() -> Fault:
    """HTTP 200 with no rows although the range holds bars (an exchange that answers a span
    inside an outage, or a hiccup, with an empty page rather than the bars after it)."""
    return Fault("empty_page", body="[]")


def truncated_body() -> Fault:
    """The normal answer's headers (with its full ``Content-Length``), half its body, then
    the connection closed: a proxy or a server that died mid-response."""
    return Fault("truncated")


def connection_reset() -> Fault:
    """The normal answer's headers and half its body, then a TCP reset (RST) mid-page."""
    return Fault("reset")


def edited_page(edit: Callable[[list[list]], list[list]]) -> Fault:
    """HTTP 200 with the normal rows passed through ``edit`` (bad candles on the wire)."""
    return Fault("edited", edit=edit)


def stale_page(start_ms: int) -> Fault:
    """Ignore ``startTime`` and answer from ``start_ms`` (a page that does not advance)."""
    return Fault("stale_page", start_ms=start_ms)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    params: dict[str, str]
    at: float  # time.monotonic() on arrival
    fault: str | None


class _Walk:
    """The deterministic bars of one (symbol, interval), generated block by block and cached."""

    def __init__(self, seed: int, symbol: str, interval_ms: int, first_price: float) -> None:
        self._key = (seed, zlib.crc32(symbol.encode()), interval_ms)
        self._sigma = 0.006 * (interval_ms / 3_600_000) ** 0.5
        self._log0 = float(np.log(first_price))
        self._blocks: list[dict[str, np.ndarray]] = []
        self._lock = threading.Lock()

    def _block(self, b: int) -> dict[str, np.ndarray]:
        with self._lock:
            while len(self._blocks) <= b:
                k = len(self._blocks)
                start_log = self._log0 if k == 0 else float(self._blocks[-1]["close_log"][-1])
                rng = np.random.default_rng([*self._key, k])
                ret = rng.normal(0.0, self._sigma, _BLOCK)
                close_log = start_log + np.cumsum(ret)
                self._blocks.append(
                    {
                        "open_log": close_log - ret,
                        "close_log": close_log,
                        "wick": np.abs(rng.normal(0.0, self._sigma / 2, (2, _BLOCK))),
                        "volume": rng.lognormal(3.0, 0.6, _BLOCK),
                        "trades": rng.integers(100, 20_000, _BLOCK),
                        "taker": rng.uniform(0.3, 0.7, _BLOCK),
                    }
                )
            return self._blocks[b]

    def bar(self, i: int) -> tuple[float, float, float, float, float, int, float]:
        blk, j = self._block(i // _BLOCK), i % _BLOCK
        o, c = float(np.exp(blk["open_log"][j])), float(np.exp(blk["close_log"][j]))
        h = max(o, c) * (1 + float(blk["wick"][0, j]))
        low = min(o, c) * (1 - float(blk["wick"][1, j]))
        return o, h, low, c, float(blk["volume"][j]), int(blk["trades"][j]), float(blk["taker"][j])


class BinanceServer(LoopbackServer):
    """The Binance fake on ``127.0.0.1:<free port>`` in a daemon thread (``LoopbackServer``).

    ``now_ms`` is the server's clock (default: real time); it bounds the newest bar served,
    which is the still-open one, as on Binance.
    """

    def __init__(self, seed: int = 7, now_ms: Callable[[], int] | None = None) -> None:
        self.seed = seed
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.omitted: set[int] = set()
        self.requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[Fault]] = {KLINES: deque(), EXCHANGE_INFO: deque()}
        self._walks: dict[tuple[str, int], _Walk] = {}
        self._lock = threading.Lock()
        self._weight_minute = -1
        self._weight = 0
        super().__init__(_handler_for(self))

    # -- scripting and inspection -------------------------------------------------------
    def push(self, *faults: Fault, path: str = KLINES) -> None:
        """Answer the next ``len(faults)`` requests to ``path`` with these faults, in order."""
        with self._lock:
            self._faults[path].extend(faults)

    def requests_to(self, path: str = KLINES) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def rows(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list]:
        """The 12-field rows held with opens in ``[start_ms, end_ms)`` (omitted bars left out)."""
        step = INTERVAL_MS[interval]
        listed = LISTINGS[symbol].listed_ms
        first = max(listed, -(-start_ms // step) * step)
        return [
            self._row(symbol, interval, t)
            for t in range(first, end_ms, step)
            if t not in self.omitted
        ]

    # -- request handling ---------------------------------------------------------------
    def _walk(self, symbol: str, interval: str) -> _Walk:
        key = (symbol, INTERVAL_MS[interval])
        with self._lock:
            if key not in self._walks:
                self._walks[key] = _Walk(
                    self.seed, symbol, INTERVAL_MS[interval], LISTINGS[symbol].first_price
                )
            return self._walks[key]

    def _row(self, symbol: str, interval: str, open_ms: int) -> list:
        step = INTERVAL_MS[interval]
        i = (open_ms - LISTINGS[symbol].listed_ms) // step
        o, h, low, c, vol, trades, taker = self._walk(symbol, interval).bar(i)
        vwap = (o + h + low + c) / 4
        return kline_row(
            open_ms,
            step,
            (o, h, low, c, vol),
            vol * vwap,
            trades,
            vol * taker,
            vol * taker * vwap,
        )

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _used_weight(self, path: str) -> int:
        minute = int(time.time() // 60)
        with self._lock:
            if minute != self._weight_minute:
                self._weight_minute, self._weight = minute, 0
            self._weight += {KLINES: 2, EXCHANGE_INFO: 20}.get(path, 1)
            return self._weight

    def _exchange_info(self) -> tuple[int, object]:
        markets = [Market(sym, lst.base, lst.quote) for sym, lst in LISTINGS.items()]
        return 200, exchange_info(markets, self.now_ms())

    def _klines(self, params: dict[str, str], fault: Fault | None) -> tuple[int, object]:
        try:
            symbol, interval, start, end, limit = parse_klines_query(params, LISTINGS, INTERVAL_MS)
        except BinanceError as exc:
            return exc.status, exc.body
        if fault is not None and fault.start_ms is not None:
            start = fault.start_ms

        step = INTERVAL_MS[interval]
        listed = LISTINGS[symbol].listed_ms
        newest = (self.now_ms() // step) * step  # the bar holding "now", still open
        hi = newest if end is None else min(newest, (end // step) * step)
        if start is not None:
            t = max(listed, -(-start // step) * step)
            opens: list[int] = []
            while t <= hi and len(opens) < limit:
                if t not in self.omitted:
                    opens.append(t)
                t += step
        else:  # the newest ``limit`` bars up to endTime (or now)
            t, opens = hi, []
            while t >= listed and len(opens) < limit:
                if t not in self.omitted:
                    opens.append(t)
                t -= step
            opens.reverse()
        rows = [self._row(symbol, interval, t) for t in opens]
        if fault is not None and fault.row_fields is not None:
            rows = [r[: fault.row_fields] for r in rows]
        if fault is not None and fault.edit is not None:
            rows = fault.edit(rows)
        return 200, rows


def _handler_for(server: BinanceServer) -> type[BinanceHandler]:
    class Handler(BinanceHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query))
            fault = server._next_fault(url.path)
            with server._lock:
                server.requests.append(
                    RecordedRequest(url.path, params, time.monotonic(), fault and fault.kind)
                )
            if fault is not None and fault.delay_s:
                time.sleep(fault.delay_s)
            headers = {"X-MBX-USED-WEIGHT-1M": str(server._used_weight(url.path))}
            if fault is not None and fault.body is not None:
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                self.send(fault.status, fault.body, fault.content_type, headers)
                return
            if url.path == EXCHANGE_INFO:
                status, payload = server._exchange_info()
            elif url.path == KLINES:
                status, payload = server._klines(params, fault)
            else:
                self.send(404, "Not Found", "text/html", headers)
                return
            if fault is not None and fault.kind in ("truncated", "reset"):
                self.send_cut(json.dumps(payload).encode(), headers, reset=fault.kind == "reset")
                return
            self.send_json(status, payload, headers)

        def send_cut(self, data: bytes, headers: dict[str, str], reset: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            if reset:  # linger 0: close() sends RST instead of FIN
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.connection.close()

    return Handler
