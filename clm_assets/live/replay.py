"""A replay exchange: any ``MarketDataSource`` served over loopback HTTP as Binance spot, on a
virtual clock.

The live loop (sensors that poll for newly closed bars, paper trading, degradation, retraining)
needs an exchange whose bars keep closing, fast enough to watch in a demo and without a
network. This server plays the bars of a source (the bundled real sample, or synthetic bars,
possibly with a planted signal) through the same Binance REST subset that
``ExchangeSource`` reads with ccxt, so the production code path runs unchanged: only the
exchange URL differs. It is a demo and test exchange: ``/api/v3/exchangeInfo`` says nothing
about where the bars come from, so whoever starts it names the source (the CLI prints it).

Time
    :class:`VirtualClock` maps real elapsed seconds to virtual time at ``speed`` (720: one
    hour of bars every 5 s). Every answer is as of the virtual now: ``/api/v3/time`` returns
    it (ccxt's ``binance.fetch_time()`` reads it), and klines never include a bar opening
    after the bar that holds it.

Klines
    Bars with opens in ``[startTime, endTime]`` (Binance: inclusive, on bar opens), at most
    ``limit`` (default 500, max 1000), ascending; without ``startTime`` the newest ``limit``
    bars up to ``endTime`` (or now). Like Binance, the bar holding "now" is included although
    it is still forming; since the source only has final bars, it is served with its final
    values. A client must therefore drop it, as ``ExchangeSource`` does for every bar whose
    ``open + interval`` is later than its ``clock()``: give it a clock that reads this
    server's time (``exchange.fetch_time()``), never the wall clock, which is far after the
    virtual now and would let the forming bar through. Fields a source does not know are
    JSON null, never invented: the taker-buy volumes always, and ``trades`` for the sample
    (Coinbase candles carry no trade count).

Symbols
    A source key ``BASE-QUOTE`` is served as the Binance id ``BASEQUOTE`` (ccxt's
    ``BASE/QUOTE``), so a client asks with the very key the source uses. The sample's only key
    is ``BTC-USD``: it is served as ``BTCUSD`` (ccxt ``BTC/USD``), not renamed to ``BTCUSDT``,
    because Coinbase's USD market is not Binance's USDT market.

Run ``python -m clm_assets.live.replay --help``; it binds 127.0.0.1 only, prints one line with
the API URL and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from clm_assets.live.binance_format import (
    EXCHANGE_INFO,
    INTERVAL_MS,
    KLINES,
    PING,
    TIME,
    BinanceError,
    BinanceHandler,
    KlinesQuery,
    LoopbackServer,
    Market,
    exchange_info,
    kline_row,
    parse_klines_query,
)
from clm_assets.sources.base import OHLCV_COLUMNS, EmptyRangeError, MarketDataSource, utc
from clm_assets.sources.intervals import interval_delta
from clm_assets.sources.sample import SampleSource
from clm_assets.sources.synthetic import EPOCH, PlantedSignal, SyntheticSource


class VirtualClock:
    """Virtual time ``start + speed * (real seconds since construction)``.

    ``real_time`` is the real clock in seconds (monotonic, so a wall-clock adjustment cannot
    move the market backwards); tests pass one they can set. ``now`` only reads immutable
    state and the real clock, so it is safe from any thread.
    """

    def __init__(
        self,
        start: pd.Timestamp,
        speed: float,
        real_time: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.start = utc(start)
        self.speed = float(speed)
        self._real_time = real_time
        self._real_start = real_time()

    def now(self) -> pd.Timestamp:
        elapsed = self._real_time() - self._real_start
        return self.start + pd.Timedelta(round(elapsed * self.speed * 1e9), unit="ns")

    def now_ms(self) -> int:
        return self.now().value // 1_000_000


def market_of(key: str) -> Market:
    """``BTC-USDT`` → ``Market("BTCUSDT", "BTC", "USDT")``; other shapes are refused."""
    parts = key.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"symbol {key!r} is not a 'BASE-QUOTE' key such as 'BTC-USDT'")
    return Market("".join(parts), *parts)


class ReplayExchange(LoopbackServer):
    """Serves ``source``'s ``interval`` bars of ``symbols`` as Binance spot (module docstring).

    ``coverage`` is ``[first bar open, end)`` of the source (``end`` None: unbounded): the
    listing time before which there are no bars, as on an exchange, and the end after which
    none come (the sample's data stops). The server runs in a daemon thread between
    ``start`` and ``stop`` (or as a context manager) on 127.0.0.1; ``port=0`` takes a free
    port.
    """

    def __init__(
        self,
        source: MarketDataSource,
        symbols: Sequence[str],
        interval: str,
        clock: VirtualClock,
        coverage: tuple[pd.Timestamp, pd.Timestamp | None],
        port: int = 0,
    ) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"Binance has no fixed {interval!r} interval")
        if not symbols:
            raise ValueError("serve at least one symbol")
        self.source = source
        self.interval = interval
        self.step_ms = int(interval_delta(interval).value // 1_000_000)
        self.clock = clock
        self.markets = {market_of(key).symbol: key for key in symbols}
        first, end = coverage
        # Bars lie on the interval grid from the Unix epoch, as on Binance.
        self._first_ms = -(-(utc(first).value // 1_000_000) // self.step_ms) * self.step_ms
        self._last_ms = (
            None
            if end is None
            else ((utc(end).value // 1_000_000) // self.step_ms - 1) * self.step_ms
        )
        super().__init__(_handler_for(self), port)

    # -- endpoints -----------------------------------------------------------------------
    def exchange_info(self) -> dict:
        return exchange_info([market_of(key) for key in self.markets.values()], self.clock.now_ms())

    def klines(self, params: Mapping[str, str]) -> list[list]:
        """The klines body for ``params``; ``BinanceError`` for what Binance would refuse."""
        query = parse_klines_query(params, self.markets, (self.interval,))
        newest = (self.clock.now_ms() // self.step_ms) * self.step_ms  # holds now: forming
        hi = (
            newest if query.end is None else min(newest, (query.end // self.step_ms) * self.step_ms)
        )
        if self._last_ms is not None:
            hi = min(hi, self._last_ms)
        lo = self._first_ms
        if query.start is not None:
            lo = max(lo, -(-query.start // self.step_ms) * self.step_ms)
        if hi < lo:
            return []
        bars = self._bars(query, lo, hi)
        return [
            kline_row(
                row.open_time.value // 1_000_000,
                self.step_ms,
                (row.open, row.high, row.low, row.close, row.volume),
                None if pd.isna(row.quote_volume) else float(row.quote_volume),
                None if pd.isna(row.trades) else int(row.trades),
                None,
                None,
            )
            for row in bars.itertuples(index=False)
        ]

    def _bars(self, query: KlinesQuery, lo: int, hi: int) -> pd.DataFrame:
        """At most ``query.limit`` bars with opens in ``[lo, hi]``: the first ones when a
        ``startTime`` was sent, else the last ones.

        Asked of the source in spans of ``limit`` bars, so that a wide ``[startTime,
        endTime]`` does not generate years of bars, and continued past a span with missing
        bars, so that a page is full unless the range ends (``ExchangeSource`` reads a short
        page as the end of the data).
        """
        step, span = self.step_ms, query.limit * self.step_ms
        forward = query.start is not None
        a, b = (lo, min(hi, lo + span - step)) if forward else (max(lo, hi - span + step), hi)
        pieces: list[pd.DataFrame] = []
        while sum(map(len, pieces)) < query.limit and lo <= a <= b <= hi:
            start = pd.Timestamp(a, unit="ms", tz="UTC")
            end = pd.Timestamp(b + step, unit="ms", tz="UTC")
            # A span with no bar (an outage in the data) is skipped: the next may hold some.
            with contextlib.suppress(EmptyRangeError):
                pieces.append(
                    self.source.fetch(self.markets[query.symbol], self.interval, start, end)
                )
            a, b = (b + step, min(hi, b + span)) if forward else (max(lo, a - span), a - step)
        if not pieces:
            return pd.DataFrame(columns=list(OHLCV_COLUMNS))
        if forward:
            return pd.concat(pieces, ignore_index=True).head(query.limit)
        return pd.concat(pieces[::-1], ignore_index=True).tail(query.limit)


def _handler_for(exchange: ReplayExchange) -> type[BinanceHandler]:
    class Handler(BinanceHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                if url.path == PING:
                    payload: object = {}
                elif url.path == TIME:
                    payload = {"serverTime": exchange.clock.now_ms()}
                elif url.path == EXCHANGE_INFO:
                    payload = exchange.exchange_info()
                elif url.path == KLINES:
                    payload = exchange.klines(dict(parse_qsl(url.query)))
                else:
                    self.send(404, "Not Found", "text/html", {})
                    return
            except BinanceError as exc:
                self.send_json(exc.status, exc.body, {})
                return
            self.send_json(200, payload, {})

    return Handler


# -- command line ----------------------------------------------------------------------------


def build_source(
    kind: str, seed: int, strength: float | None, flip_at: pd.Timestamp | None
) -> tuple[MarketDataSource, tuple[pd.Timestamp, pd.Timestamp | None]]:
    """The source the CLI names, with its coverage; a signal only where one can be planted."""
    if kind == "sample":
        if strength is not None or flip_at is not None:
            raise ValueError("a signal can only be planted in the synthetic source")
        sample = SampleSource()
        return sample, sample.coverage
    if kind == "synthetic":
        if strength is None and flip_at is not None:
            raise ValueError("--flip-at needs --signal-strength")
        planted = None if strength is None else PlantedSignal(strength, flip_at=flip_at)
        return SyntheticSource(seed=seed, signal=planted), (EPOCH, None)
    raise ValueError(f"unknown source {kind!r}: choose sample or synthetic")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clm_assets.live.replay",
        description="Serve a source's bars as Binance spot on 127.0.0.1 with a virtual clock.",
    )
    parser.add_argument("--source", choices=("sample", "synthetic"), required=True)
    parser.add_argument(
        "--symbols",
        default=None,
        help="comma-separated BASE-QUOTE keys (default: BTC-USD for sample, BTC-USDT else)",
    )
    parser.add_argument("--interval", default="1h", help="the one interval served")
    parser.add_argument(
        "--start", required=True, help="virtual time at launch, UTC, on the interval grid"
    )
    parser.add_argument("--speed", type=float, default=720.0, help="virtual s per real s")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--seed", type=int, default=7, help="synthetic seed")
    parser.add_argument("--signal-strength", type=float, default=None)
    parser.add_argument("--flip-at", default=None, help="UTC time the planted signal reverses")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, print ``replay exchange: <api url> ...`` (one line), serve until a signal."""
    args = _parser().parse_args(argv)
    flip_at = None if args.flip_at is None else utc(args.flip_at)
    source, coverage = build_source(args.source, args.seed, args.signal_strength, flip_at)
    symbols = (
        args.symbols.split(",")
        if args.symbols
        else ["BTC-USD" if args.source == "sample" else "BTC-USDT"]
    )
    start = utc(args.start)
    if start.value % interval_delta(args.interval).value:
        raise ValueError(f"--start {start.isoformat()} is not on the {args.interval} bar grid")
    clock = VirtualClock(start, args.speed)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ReplayExchange(source, symbols, args.interval, clock, coverage, args.port) as exchange:
        print(
            f"replay exchange: {exchange.api_url} source={source.name} "
            f"symbols={','.join(symbols)} interval={args.interval} start={start.isoformat()} "
            f"speed={args.speed:g}",
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
