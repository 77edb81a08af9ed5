"""The Binance spot REST formats that ccxt reads: klines rows, ``exchangeInfo``, error bodies.

Shared by the replay exchange (``clm_assets.live.replay``) and the test fake
(``clm_assets_tests.sources.binance_server``), so that both speak exactly one dialect and a
fix to the format reaches both. Semantics follow the real API (see ``shared/FACTS.md``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, Self

HOST = "127.0.0.1"
"""Loopback only: these servers are for demos and tests, never reachable from outside."""

PING = "/api/v3/ping"
TIME = "/api/v3/time"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
KLINES = "/api/v3/klines"

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
"""Fixed-length Binance intervals (``3d``, ``1w``, ``1M`` are not served)."""

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class Market:
    """One spot market as ``exchangeInfo`` lists it: ``BTCUSDT`` trades ``BTC`` for ``USDT``."""

    symbol: str
    base: str
    quote: str


class BinanceError(Exception):
    """A request Binance refuses: HTTP ``status`` with the body ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.body = {"code": code, "msg": msg}


class KlinesQuery(NamedTuple):
    """The validated parameters of one ``GET /api/v3/klines``; times are bar opens in ms and
    ``start``/``end`` are inclusive, as on Binance."""

    symbol: str
    interval: str
    start: int | None
    end: int | None
    limit: int


def parse_klines_query(
    params: Mapping[str, str], symbols: Container[str], intervals: Container[str]
) -> KlinesQuery:
    """Validate klines parameters in Binance's order, raising its error for the first fault."""
    symbol, interval = params.get("symbol"), params.get("interval")
    if not symbol or not interval:
        missing = "symbol" if not symbol else "interval"
        raise BinanceError(
            400,
            -1102,
            f"Mandatory parameter '{missing}' was not sent, was empty/null, or malformed.",
        )
    if symbol not in symbols:
        raise BinanceError(400, -1121, "Invalid symbol.")
    if interval not in intervals:
        raise BinanceError(400, -1120, "Invalid interval.")
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
    except ValueError:
        raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    if start is not None and end is not None and start > end:
        raise BinanceError(400, -1023, "Start time is greater than end time.")
    return KlinesQuery(symbol, interval, start, end, limit)


def decimal(x: float | None) -> str | None:
    """A price or volume as Binance writes it (a decimal string); ``None`` stays JSON null."""
    return None if x is None else f"{x:.8f}"


def kline_row(
    open_ms: int,
    step_ms: int,
    ohlcv: tuple[float, float, float, float, float],
    quote_volume: float | None,
    trades: int | None,
    taker_base: float | None,
    taker_quote: float | None,
) -> list:
    """The 12-field klines row ``[openTime, open, high, low, close, volume, closeTime,
    quoteVolume, trades, takerBuyBase, takerBuyQuote, "0"]``; a value the server does not
    know is JSON null rather than a number made up to fill the slot."""
    return [
        open_ms,
        *(decimal(v) for v in ohlcv),
        open_ms + step_ms - 1,
        decimal(quote_volume),
        trades,
        decimal(taker_base),
        decimal(taker_quote),
        "0",
    ]


def exchange_info(markets: Iterable[Market], server_time_ms: int) -> dict:
    """The ``exchangeInfo`` body with the fields ccxt's ``fetch_markets`` / ``parse_market``
    read, every market spot and ``TRADING``."""
    symbols = [
        {
            "symbol": m.symbol,
            "status": "TRADING",
            "baseAsset": m.base,
            "baseAssetPrecision": 8,
            "quoteAsset": m.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": True,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
                {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        }
        for m in markets
    ]
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }


class BinanceHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 request handler base that answers like Binance and logs nothing."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a request line per bar poll would drown the output of ``make live``."""

    def send_json(self, status: int, payload: object, headers: Mapping[str, str]) -> None:
        self.send(status, json.dumps(payload), "application/json;charset=UTF-8", headers)

    def send(self, status: int, body: str, ctype: str, headers: Mapping[str, str]) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout), as real clients do


class LoopbackServer:
    """A ``ThreadingHTTPServer`` on ``127.0.0.1:port`` (0: a free one) in a daemon thread,
    between ``start`` and ``stop`` or as a context manager."""

    def __init__(self, handler: type[BinanceHandler], port: int = 0) -> None:
        self._httpd = ThreadingHTTPServer((HOST, port), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def api_url(self) -> str:
        """What ``ExchangeSource(api_url=...)`` takes: the ``/api/v3`` base."""
        return f"http://{HOST}:{self.port}/api/v3"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
