"""A synthetic market: GARCH(1,1) log returns with Student-t shocks, for any symbol.

The synthetic source exists to exercise the whole pipeline on any symbol, any interval and
any stretch of time with data whose statistics look like a crypto market (fat tails,
volatility clustering, no linear predictability, an intraday volume cycle). It is labelled
``synthetic`` everywhere; it never stands in for a real source.

Determinism is by design: a bar is a pure function of ``(parameters, symbol, interval, bar
index since EPOCH)``. So separately materialized partitions concatenate to exactly what one
big fetch returns, and re-running a pipeline reproduces it bit for bit (for a given numpy).

How the process is made both exact and fast:

* Time is cut into blocks of ``BLOCK_BARS`` bars counted from ``EPOCH``. Each block draws its
  shocks from its own generator, seeded by ``SeedSequence(seed, spawn_key=(symbol hash,
  interval seconds, block, stream))``; so any block can be drawn without drawing the others.
* The conditional variance of a block is the GARCH recursion run over the previous
  ``burn_in_blocks`` blocks' shocks and then its own, started from the unconditional
  variance. With persistence ``alpha + beta < 1`` the start value is forgotten
  geometrically; the burn-in is sized so that it has shrunk below ``BURN_IN_TOLERANCE``
  relative, hence the variance path is, to that tolerance, one continuous GARCH path, while
  each block only depends on a fixed number of neighbours.
* Because blocks are independent given their shocks, the recursion runs vectorized across
  blocks: one Python loop over the positions of a window, numpy over the blocks.
* Prices need the sum of all earlier returns. Block sums from the epoch onward are computed
  once per process and cached per ``(parameters, symbol, interval)``, extended on demand.

The GARCH recursion is hand-written: it is two lines of numpy, and the ``arch`` package is
not a dependency of this project.

A planted signal (optional, :class:`PlantedSignal`)
    Plain synthetic returns are unpredictable by construction, so a model trained on them can
    only learn noise. The live demo needs something a model *can* learn, and that later stops
    working, to show retraining and promotion react. With a signal, each bar's log return
    gets a drift that depends only on the clock: an hour-of-day cycle
    ``s * strength * sigma_h * cos(2 pi (h - phase_hours) / 24)`` per hour, integrated over
    the bar, where ``sigma_h`` is the bar's conditional GARCH volatility per hour and ``s`` is
    +1 before ``flip_at`` and -1 from it on (by bar open). The drift is exogenous: the GARCH
    recursion runs on the shocks, not on the returns, so volatility, shocks, blocks and their
    independence are exactly those of the plain series, and only prices (and the volume and
    wicks that follow the move) change. The calendar features ``f_hour_sin``/``f_hour_cos``
    describe the cycle, and the best position changes sign only twice a day, so trading it
    costs little. Daily and coarser bars integrate the cycle over whole days: no signal there.
    A source with a signal says so in its ``name`` (see :attr:`PlantedSignal.label`).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.sources.base import (
    EmptyRangeError,
    OutOfRangeError,
    UnknownSymbolError,
    check_range,
    to_canonical,
    utc,
)
from clm_assets.sources.intervals import interval_delta

EPOCH = pd.Timestamp("2015-01-01", tz="UTC")
"""Bar 0 of every synthetic series. A UTC midnight, so bars of every interval tile UTC days."""

BLOCK_BARS = 1024
"""Bars per simulation block: long enough that a one-block burn-in forgets the start value
at the default persistence (0.98**1024 ~ 1e-9), short enough that a small fetch is cheap."""

BURN_IN_TOLERANCE = 1e-6
"""Relative influence of the restart value on a block's variance that the burn-in allows."""

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")

PEAK_HOUR_UTC = 16.0
"""Volume peaks in the US afternoon / European evening, as on the real sample (~16 UTC)."""

HOUR_PROFILE_AMPLITUDE = 0.4
"""Busiest/quietest hourly volume ratio (1 + a) / (1 - a) ~ 2.3, near the sample's ~2.2."""

VOLUME_PER_HOUR = 500.0
"""Mean base-asset volume per hour, the order of magnitude of the real BTC-USD sample."""

VOLUME_NOISE = 0.35
"""Log-normal dispersion of volume unexplained by the clock and by the move."""

MEAN_TRADE_SIZE = 0.1
"""Mean base-asset size of one trade: sets how many trades a bar's volume implies."""

SIGNAL_PHASE_HOURS = 14.0
"""Default UTC hour at which a planted signal's upward drift peaks (before a flip): the
European afternoon, two hours ahead of the volume peak so the two cycles are not one."""

_W = 2.0 * np.pi / 24.0  # radians per hour of the daily cycle
_LEVEL_CHUNK_BLOCKS = 512
_LEVELS: dict[tuple, np.ndarray] = {}
_LEVELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlantedSignal:
    """A learnable hour-of-day drift planted into synthetic returns (module docstring).

    ``strength`` is the drift amplitude per hour in units of the conditional hourly
    volatility: a position with the sign of the drift earns ``strength * 2 / pi`` of a
    standard deviation per hour on average, before costs. ``phase_hours`` is the UTC hour at
    which the drift peaks upward (before the flip). ``flip_at`` (optional) reverses the drift
    for every bar opening at or after it, so a model fitted before it loses after it.
    """

    strength: float
    flip_at: pd.Timestamp | None = None
    phase_hours: float = SIGNAL_PHASE_HOURS

    def __post_init__(self) -> None:
        # A zero or negative strength would be "no signal" or a phase shift in disguise,
        # and make two different names describe one series.
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"signal strength must be a positive number, got {self.strength!r}")
        if not (math.isfinite(self.phase_hours) and 0 <= self.phase_hours < 24):
            raise ValueError(f"phase_hours must lie in [0, 24), got {self.phase_hours!r}")
        if self.flip_at is not None:
            object.__setattr__(self, "flip_at", utc(self.flip_at))
        object.__setattr__(self, "strength", float(self.strength))
        object.__setattr__(self, "phase_hours", float(self.phase_hours))

    @property
    def label(self) -> str:
        """``signal(strength=0.1,phase=14,flip=2024-03-01T00:00:00Z)``: every parameter, so
        the name of the source tells which series a stored bar came from."""
        flip = "none" if self.flip_at is None else self.flip_at.isoformat().replace("+00:00", "Z")
        return f"signal(strength={self.strength:g},phase={self.phase_hours:g},flip={flip})"


@dataclass(frozen=True)
class _Params:
    seed: int
    sigma_hourly: float
    alpha: float
    beta: float
    nu: float
    start_price: float
    signal: PlantedSignal | None = None


class SyntheticSource:
    """GARCH(1,1)-t OHLCV for any well-formed symbol key, from ``EPOCH`` onward.

    ``sigma_hourly`` is the unconditional standard deviation of hourly log returns (the real
    sample's is ~1 %); bars of other intervals scale it by ``sqrt(interval / 1h)``, the
    random-walk scaling, so volatility per unit of time does not depend on the bar size.
    ``nu`` is the Student-t degrees of freedom of the shocks (standardized to unit variance,
    so ``sigma_hourly`` keeps its meaning). The defaults are deliberately wild, like crypto:
    ``alpha**2 E[z**4] + 2 alpha beta + beta**2 = 1.05 > 1``, so returns have no finite fourth
    moment, and sample kurtosis varies a lot from seed to seed (single digits to hundreds over
    a year of hourly bars; the real sample's hourly excess kurtosis is ~16).
    ``start_price`` is the price at ``EPOCH``; the default is near BTC-USD's on that date so
    that synthetic numbers look plausible next to real ones. ``signal`` plants a learnable
    drift (:class:`PlantedSignal`); without it the series has no predictable mean, and its
    bars are exactly those of a source built without the argument.

    Each interval is its own series: a 4h synthetic bar is not the aggregate of 1h synthetic
    bars. Aggregation consistency is what the real sample checks; here it would force
    simulating at the finest interval for every request.
    """

    name: str = "synthetic"
    epoch = EPOCH

    def __init__(
        self,
        seed: int = 7,
        sigma_hourly: float = 0.008,
        alpha: float = 0.08,
        beta: float = 0.90,
        nu: float = 4.5,
        start_price: float = 300.0,
        signal: PlantedSignal | None = None,
    ) -> None:
        if not (isinstance(seed, int | np.integer) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not sigma_hourly > 0:
            raise ValueError(f"sigma_hourly must be positive, got {sigma_hourly!r}")
        if not (alpha >= 0 and beta >= 0 and alpha + beta < 1):
            raise ValueError(
                f"need alpha >= 0, beta >= 0 and alpha + beta < 1 (a finite unconditional "
                f"variance), got alpha={alpha!r}, beta={beta!r}"
            )
        if not nu > 2:
            raise ValueError(f"nu must exceed 2 (finite variance), got {nu!r}")
        if not start_price > 0:
            raise ValueError(f"start_price must be positive, got {start_price!r}")
        if signal is not None and not isinstance(signal, PlantedSignal):
            raise ValueError(f"signal must be a PlantedSignal or None, got {signal!r}")
        self.params = _Params(
            int(seed),
            float(sigma_hourly),
            float(alpha),
            float(beta),
            float(nu),
            float(start_price),
            signal,
        )
        if signal is not None:
            # On the instance: every label, log line and error built from ``name`` says so.
            self.name = f"{SyntheticSource.name}+{signal.label}"

    @property
    def burn_in_blocks(self) -> int:
        """Blocks of burn-in so that ``(alpha + beta) ** bars < BURN_IN_TOLERANCE``."""
        persistence = self.params.alpha + self.params.beta
        if persistence == 0:
            return 1
        bars = math.log(BURN_IN_TOLERANCE) / math.log(persistence)
        return max(1, math.ceil(bars / BLOCK_BARS))

    def fetch(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Synthetic candles of ``symbol`` with bar opens in ``[start, end)``.

        Bars lie on the grid ``EPOCH + k * interval``; a range before ``EPOCH`` is out of
        range (the series has no past before its anchor), and a range holding no bar open
        is an ``EmptyRangeError`` rather than an empty frame that looks like missing data.
        """
        if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
            raise UnknownSymbolError(
                f"synthetic symbol keys look like 'BASE-QUOTE' ({SYMBOL_PATTERN.pattern}), "
                f"got {symbol!r}"
            )
        delta = interval_delta(interval)
        start, end = check_range(start, end)
        if start < EPOCH:
            raise OutOfRangeError(
                f"requested [{start.isoformat()}, {end.isoformat()}) of {symbol} {interval} "
                f"starts before the synthetic series' epoch {EPOCH.isoformat()}; coverage is "
                f"[{EPOCH.isoformat()}, unbounded)"
            )
        step = delta.value
        first = -(-(start.value - EPOCH.value) // step)
        stop = -(-(end.value - EPOCH.value) // step)
        if stop <= first:
            raise EmptyRangeError(
                f"[{start.isoformat()}, {end.isoformat()}) holds no {interval} bar open"
            )
        series = _Series(self.params, self.burn_in_blocks, symbol, delta)
        return to_canonical(series.bars(first, stop))


class _Series:
    """One ``(parameters, symbol, interval)`` series; bars addressed by index since EPOCH."""

    def __init__(self, params: _Params, burn_in: int, symbol: str, delta: pd.Timedelta) -> None:
        self.p = params
        self.burn_in = burn_in
        self.symbol = symbol
        self.delta = delta
        self.hours = delta / pd.Timedelta(hours=1)
        digest = hashlib.blake2b(symbol.encode(), digest_size=8).digest()
        # A stable hash: Python's hash() of a str changes between processes.
        self.key = (
            int.from_bytes(digest[:4], "little"),
            int.from_bytes(digest[4:], "little"),
            int(delta.total_seconds()),
        )
        var_bar = params.sigma_hourly**2 * self.hours
        self.var_bar = var_bar
        self.omega = var_bar * (1.0 - params.alpha - params.beta)
        self.t_scale = math.sqrt((params.nu - 2.0) / params.nu)

    # -- random streams ------------------------------------------------------------------

    def _rng(self, block: int, stream: int) -> np.random.Generator:
        seq = np.random.SeedSequence(self.p.seed, spawn_key=(*self.key, block, stream))
        return np.random.Generator(np.random.PCG64(seq))

    def _shocks(self, block: int) -> np.ndarray:
        """Unit-variance Student-t shocks of one block.

        Blocks before the epoch (burn-in of the first blocks) are shocks of exactly 1: with
        ``z**2 == 1`` the recursion maps the unconditional variance onto itself, so the
        series starts at its stationary level instead of at an arbitrary state.
        """
        if block < 0:
            return np.ones(BLOCK_BARS)
        return self._rng(block, 0).standard_t(self.p.nu, BLOCK_BARS) * self.t_scale

    # -- GARCH ---------------------------------------------------------------------------

    def _returns(self, b0: int, b1: int) -> tuple[np.ndarray, np.ndarray]:
        """Conditional variances and log returns of blocks ``[b0, b1)``, each (n, N).

        ``sigma2[t] = omega + (alpha * z[t-1]**2 + beta) * sigma2[t-1]`` is the GARCH(1,1)
        recursion written on shocks (``eps = sigma * z``); the loop runs over the positions
        of the burn-in + block window, numpy over the blocks.
        """
        n, w = b1 - b0, self.burn_in
        z = np.stack([self._shocks(b) for b in range(b0 - w, b1)])  # (n + w, N)
        coef = (self.p.alpha * z * z + self.p.beta).T.copy()  # (N, n + w), rows contiguous
        state = np.full(n, self.var_bar)
        sigma2 = np.empty((BLOCK_BARS, n))
        for lag in range(w + 1):
            rows = coef[:, lag : lag + n]
            record = lag == w
            for pos in range(BLOCK_BARS):
                if record:
                    sigma2[pos] = state
                state = self.omega + rows[pos] * state
        sigma2 = sigma2.T.copy()
        returns = np.sqrt(sigma2) * z[w:]
        if self.p.signal is not None:
            returns += self._drift(b0, b1, sigma2, self.p.signal)
        return sigma2, returns

    def _drift(self, b0: int, b1: int, sigma2: np.ndarray, signal: PlantedSignal) -> np.ndarray:
        """The planted signal's log drift of every bar of blocks ``[b0, b1)``, (n, N).

        The hourly rate ``strength * sqrt(sigma2 / hours) * cos(...)`` integrated over the
        bar's span: for 1h bars, ``strength * sigma * (mean of cos over the hour)``. It reads
        only the bar index and the variance, never a return, so the GARCH path is unchanged.
        """
        index = self._index(b0, b1)
        integral = _sine_difference(self._open_hour(index), self.hours, signal.phase_hours) / _W
        sign = np.ones(index.shape)
        if signal.flip_at is not None:
            flip = -(-(signal.flip_at.value - EPOCH.value) // self.delta.value)
            sign[index >= flip] = -1.0
        return sign * signal.strength * np.sqrt(sigma2 / self.hours) * integral

    def _index(self, b0: int, b1: int) -> np.ndarray:
        """Bar indices since EPOCH of blocks ``[b0, b1)``, (n, N)."""
        return np.arange(b0 * BLOCK_BARS, b1 * BLOCK_BARS, dtype=np.int64).reshape(b1 - b0, -1)

    def _open_hour(self, index: np.ndarray) -> np.ndarray:
        """UTC hour of day (fractional) at each bar's open."""
        seconds = int(self.delta.total_seconds())
        return ((index * seconds) % 86_400) / 3600.0

    def _levels(self, upto: int) -> np.ndarray:
        """Cumulative log return from EPOCH to the start of each block ``0..upto`` inclusive.

        Summed strictly in order (``cumsum``), and the sum of a block is the last element of
        that block's own ``cumsum``, so the level is bit-identical however it was extended.
        """
        cache_key = (self.p, self.symbol, self.key[2])
        with _LEVELS_LOCK:
            levels = _LEVELS.get(cache_key, np.zeros(1))
            while len(levels) <= upto:
                b0 = len(levels) - 1
                b1 = max(b0 + 1, min(upto, b0 + _LEVEL_CHUNK_BLOCKS))
                _, returns = self._returns(b0, b1)
                sums = np.cumsum(returns, axis=1)[:, -1]
                levels = np.concatenate([levels[:-1], np.cumsum(np.append(levels[-1], sums))])
            _LEVELS[cache_key] = levels
        return levels[: upto + 1]

    # -- bars ----------------------------------------------------------------------------

    def bars(self, first: int, stop: int) -> pd.DataFrame:
        """OHLCV of bars ``[first, stop)`` (indices since EPOCH)."""
        b0, b1 = first // BLOCK_BARS, (stop - 1) // BLOCK_BARS + 1
        levels = self._levels(b1 - 1)[b0:b1, None]
        sigma2, returns = self._returns(b0, b1)
        path = np.cumsum(returns, axis=1)
        log_close = levels + path
        log_open = levels + np.concatenate([np.zeros((b1 - b0, 1)), path[:, :-1]], axis=1)

        uniforms = []
        noise = []
        details = [self._rng(b, 1) for b in range(b0, b1)]
        for rng in details:
            uniforms.append(rng.random((2, BLOCK_BARS)))
            noise.append(rng.standard_normal(BLOCK_BARS))
        u = np.stack(uniforms, axis=1)  # (2, n, N)
        up, down = _bridge_extremes(returns, sigma2, u[0], u[1])

        price0 = self.p.start_price
        open_ = price0 * np.exp(log_open)
        close = price0 * np.exp(log_close)
        # The bridge extremes bound both endpoints exactly; max/min only absorb the last-ulp
        # rounding between exp(open + move) and exp(close).
        high = np.maximum(price0 * np.exp(log_open + up), np.maximum(open_, close))
        low = np.minimum(price0 * np.exp(log_open + down), np.minimum(open_, close))

        index = self._index(b0, b1)
        volume = self._volume(index, np.abs(returns), np.stack(noise))
        # Trades are counts, so Poisson around volume / trade size; +1 because a bar that
        # printed volume had at least one trade.
        trades = np.stack(
            [1 + rng.poisson(v / MEAN_TRADE_SIZE) for rng, v in zip(details, volume, strict=True)]
        )
        typical = (high + low + close) / 3.0

        lo, hi = first - b0 * BLOCK_BARS, stop - b0 * BLOCK_BARS
        return pd.DataFrame(
            {
                # Naive datetime64 (UTC): to_canonical converts it without a per-row object path.
                "open_time": (EPOCH.value + index.ravel()[lo:hi] * self.delta.value).view(
                    "datetime64[ns]"
                ),
                "open": open_.ravel()[lo:hi],
                "high": high.ravel()[lo:hi],
                "low": low.ravel()[lo:hi],
                "close": close.ravel()[lo:hi],
                "volume": volume.ravel()[lo:hi],
                "quote_volume": (volume * typical).ravel()[lo:hi],
                "trades": trades.ravel()[lo:hi],
            }
        )

    def _volume(self, index: np.ndarray, abs_return: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Base volume: clock profile x activity x log-normal noise.

        The clock profile is the mean of ``1 + a cos(2 pi (h - peak) / 24)`` over the bar's
        span, so it is right for minute bars and flattens to 1 for daily bars. Activity rises
        with ``|return|`` in units of the typical move, because volume and volatility move
        together in real markets; the 0.5 floor keeps a flat bar from having zero volume.
        """
        span = self.hours
        profile = 1.0 + HOUR_PROFILE_AMPLITUDE * _sine_difference(
            self._open_hour(index), span, PEAK_HOUR_UTC
        ) / (_W * span)
        typical_move = math.sqrt(self.var_bar) * _mean_abs_t(self.p.nu)
        activity = 0.5 + 0.5 * abs_return / typical_move
        dispersion = np.exp(VOLUME_NOISE * noise - 0.5 * VOLUME_NOISE**2)
        return VOLUME_PER_HOUR * span * profile * activity * dispersion


def _sine_difference(h0: np.ndarray, span: float, peak: float) -> np.ndarray:
    """``sin(w (h0 + span - peak)) - sin(w (h0 - peak))`` with ``w = 2 pi / 24``: ``w`` times
    the integral of the daily cycle ``cos(w (h - peak))`` over the bar ``[h0, h0 + span]``
    (hours). Bars spanning whole days integrate it to 0."""
    return np.sin(_W * (h0 + span - peak)) - np.sin(_W * (h0 - peak))


def _bridge_extremes(
    move: np.ndarray, var: np.ndarray, u_high: np.ndarray, u_low: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log excursions to the high and low of a Brownian bridge from 0 to ``move``.

    Sampled by inverting the exact law ``P(max >= m) = exp(-2 m (m - move) / var)`` rather
    than by a few discrete sub-steps, which would understate the range. The result is
    ``>= max(0, move)`` and ``<= min(0, move)`` algebraically, so OHLC bounds hold by
    construction. High and low are drawn independently: each marginal is exact, only their
    (weak) joint dependence is ignored.
    """
    spread_high = np.sqrt(move * move - 2.0 * var * np.log1p(-u_high))
    spread_low = np.sqrt(move * move - 2.0 * var * np.log1p(-u_low))
    return (move + spread_high) / 2.0, (move - spread_low) / 2.0


def _mean_abs_t(nu: float) -> float:
    """``E|z|`` of a unit-variance Student-t with ``nu`` degrees of freedom."""
    log_ratio = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)
    return 2.0 * math.sqrt(nu - 2.0) * math.exp(log_ratio) / (math.sqrt(math.pi) * (nu - 1))
