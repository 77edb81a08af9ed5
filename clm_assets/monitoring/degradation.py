"""Has the production model's live (paper) record degraded relative to what its backtest
promised? A pure sequential test that the ``performance_degradation`` sensor calls on
every tick; nothing read or written, no Dagster.

Two rules, the first to fire wins:

* ``cusum``: a one-sided CUSUM on standardized excess returns. Each bar's net return ``r``
  becomes ``z = (m - r) / σ`` with ``m = haircut × backtest mean`` (backtests overstate:
  the live record is only expected to keep a fraction of the promised mean) and ``σ`` the
  backtest's per-bar std; ``z`` is winsorized to ``[-clip, clip]`` and the statistic is
  ``S_t = max(0, S_{t-1} + z_t - k)``, ``S_0 = 0``. It fires at the first bar (from the
  ``min_bars``-th on) where ``S_t > threshold``. Everything is in units of the backtest's
  std, so scaling the returns and the expectation by the same factor changes nothing.
  Why winsorize: hourly crypto returns are fat-tailed (Student-t with ~4 degrees of
  freedom); one -30 σ bar would otherwise be most of the threshold on its own, and a
  single bar is not evidence that an edge is gone.
* ``drawdown``: a hard floor in equity units, independent of any statistics. It fires at
  the first bar where the live record's drawdown (compounded, equity starting at 1.0) is
  deeper than ``max(drawdown_multiple × |backtest max drawdown|, min_drawdown)``. It is
  deliberately NOT scale-invariant: losing 30 % hurts whatever the volatility promised.

Hysteresis contract (the caller's side): the statistic starts at 0 at the first bar
passed. After an alarm the sensor passes only the bars strictly after ``Verdict.fired_at``
(its cursor), so one bad stretch fires once, and a new alarm needs fresh evidence of at
least ``threshold`` (about ``threshold / clip`` bars at the very least) gathered after the
previous one. A newly promoted model starts a new record (its own expectation) the same way.

Error rates: the defaults of ``DetectorConfig`` come from ``benchmarks/bench_degradation.py``,
which measures this very function on simulated hourly records with Student-t(4) shocks;
its table is the published false-alarm rate and detection delay (quoted in
``DetectorConfig``'s docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.numbers import fmt_number

CUSUM = "cusum"
DRAWDOWN = "drawdown"
NO_COOLDOWN = pd.Timedelta(0)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Expectation:
    """What the promoted model's backtest promised, per bar of its own interval.

    * ``mean`` / ``std``: of the backtest's per-bar net returns (fractions, 0.001 = 0.1 %).
    * ``max_drawdown``: of the backtest, a negative fraction (``-0.12``) or 0.
    * ``label``: where the numbers come from (model version, backtest window), quoted in
      every verdict so that an alarm can be traced to the promise it compared against.

    A zero or non-finite ``std`` raises ``ValueError``: without a scale there is no
    standardized return, and the caller must skip the symbol with that reason rather than
    judge against an invented one.
    """

    mean: float
    std: float
    max_drawdown: float
    label: str

    def __post_init__(self) -> None:
        where = f"expectation {self.label!r}"
        _finite(f"{where}: mean", self.mean)
        std = _finite(f"{where}: std", self.std)
        if std <= 0.0:
            raise ValueError(f"{where}: std must be > 0 to standardize returns, got {std!r}")
        mdd = _finite(f"{where}: max_drawdown", self.max_drawdown)
        if not -1.0 <= mdd <= 0.0:
            raise ValueError(f"{where}: max_drawdown is a fraction in [-1, 0], got {mdd!r}")

    @classmethod
    def from_annual(
        cls,
        sharpe: float,
        volatility: float,
        max_drawdown: float,
        periods_per_year: float,
        label: str,
    ) -> Expectation:
        """From the annualized Sharpe and volatility a backtest report shows: per bar,
        ``std = volatility / √P`` and ``mean = sharpe × volatility / P`` (arithmetic
        annualization, the convention of ``backtest.metrics``)."""
        periods = _finite("periods_per_year", periods_per_year)
        if periods <= 0.0:
            raise ValueError(f"periods_per_year must be > 0, got {periods!r}")
        vol = _finite("volatility", volatility)
        return cls(
            mean=_finite("sharpe", sharpe) * vol / periods,
            std=vol / math.sqrt(periods),
            max_drawdown=max_drawdown,
            label=label,
        )


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of ``detect`` (``threshold``, ``k`` and ``clip`` in units of the
    backtest's per-bar std).

    * ``haircut``: fraction of the backtest mean the live record is expected to keep; the
      CUSUM measures shortfall against ``haircut × mean``.
    * ``threshold``: the CUSUM fires when its statistic exceeds it.
    * ``k``: allowance subtracted every bar; the CUSUM drifts down (stays quiet) while the
      live mean is above ``haircut × mean - k σ``.
    * ``clip``: standardized returns are winsorized to ``[-clip, clip]``.
    * ``min_bars``: no alarm (of either rule) before this many bars are judged.
    * ``drawdown_multiple`` / ``min_drawdown``: the drawdown floor is
      ``max(drawdown_multiple × |backtest max drawdown|, min_drawdown)`` (capped at 100 %).

    Defaults, measured by ``benchmarks/bench_degradation.py`` (``python
    benchmarks/bench_degradation.py``, 2000 records per cell, ~30 s): hourly bars, Student-t(4)
    shocks at 0.6 % hourly vol, true annualized Sharpe 2 / 3 / 5 / 10, and the promise built
    as ``divergence.expectation_of`` builds it, from a 336-bar (``CLM_EVAL_DAYS`` 14)
    evaluation window of the same process, kept only if that window's PSR vs 0 is >= 0.9 (a
    stand-in for the promotion gate: the promised Sharpe is then 8.9 / 8.9 / 9.7 / 12.0 in
    the median, its max drawdown ~6 %, so ``1.5 ×`` it is below the minimum floor):

    * a record exactly as its model truly performs fires within 30 days in
      3.0 / 1.1 / 0.3 / 0.0 % of records (drawdown floor alone 0.7 / 0.0 / 0.0 / 0.0 %),
      within 90 days in 13.8 / 7.0 / 1.6 / 0.0 %;
    * an edge that flips sign at bar 240 is detected within the next 480 bars in
      11.6 / 14.9 / 23.9 / 63.7 % of records (median delay at Sharpe 10: 403 bars; below
      Sharpe 10 the median exceeds 480); one that merely vanishes (mean 0) in 4-6 %. A
      5 % z-test that KNOWS the flip bar and the true mean would detect the flip in
      24 / 41 / 76 / 100 %: an hour carries 0.02-0.1 σ of signal.
    * against the idealized promise (true mean and std; the former model of this benchmark)
      the same defaults give 2.5 / 0.9 / 0.3 / 0.0 % false alarms within 30 days and
      10 / 13 / 22 / 63 % flip detection.

    Why these values. The promise of a promoted model is inflated (selection on a 336-bar
    window whose mean has a standard error of 0.055 σ, 2.5 times the true mean at Sharpe 2),
    so any ``haircut`` > 0 measures shortfall against a mean the model never had: at
    threshold 45, haircut 0.5 (the former default) fires within 30 days in 22 % of records
    at Sharpe 2 even with a 35 % floor, haircut 0.25 in 8 %. ``haircut`` 0 makes the
    CUSUM independent of the promised mean (only the promised std scales it): it asks "is
    the live record losing more than ``k`` σ a bar", which selection cannot bias. With it,
    ``threshold`` 30 gives 16 % false alarms at Sharpe 2 and 45 gives 3.0 %; over
    ``k`` 0 / 0.01 / 0.02 / 0.04 the best threshold meeting 5 % lands on the same
    false-alarm/detection frontier (within ~2 points), so ``k`` stays 0.02. The drawdown
    floor is in equity units: at 0.6 % hourly vol a record as promised draws down far
    within a month, so with the evaluation-window promise the former 5 % minimum fires
    within 30 days in 76 % of records at Sharpe 2 and a 20 % minimum still in 17 %; 30 %
    gives 3.4 % (and 65.6 % flip detection at Sharpe 10) at 0.6 % vol but 9.2 % at 0.8 %
    hourly vol, 35 % gives 3.0 % at 0.6 % and 4.3 % at 0.8 % (``CLM_DEGRADATION_VOL=0.008``,
    which also gives 24.8 % within 90 days at Sharpe 2), so ``min_drawdown`` is 0.35.
    ``drawdown_multiple`` 1.5 only matters for a promise whose drawdown exceeds 23 %.
    ``clip`` 4 σ: a unit-variance t(4) shock lies beyond ±4 on about 1 bar in 200
    (P(|t4| > 4√2) = 0.48 %), so it trims the tail and leaves the body, and a symmetric clip
    keeps the mean of symmetric shocks unbiased. Finding: no setting of the grid keeps false
    alarms at or below 5 % and detects a flip at Sharpe 2-5 in most records within 20 days;
    at those Sharpes the detector is a guard against a large or lasting loss, not a fast
    test of a small edge.
    """

    haircut: float = 0.0
    threshold: float = 45.0
    k: float = 0.02
    clip: float = 4.0
    min_bars: int = 24
    drawdown_multiple: float = 1.5
    min_drawdown: float = 0.35

    def __post_init__(self) -> None:
        if isinstance(self.min_bars, bool) or not isinstance(self.min_bars, int):
            raise ValueError(f"min_bars must be an int, got {self.min_bars!r}")
        if self.min_bars < 1:
            raise ValueError(f"min_bars must be >= 1, got {self.min_bars}")
        for name in ("haircut", "threshold", "k", "clip", "drawdown_multiple", "min_drawdown"):
            _finite(name, getattr(self, name))
        if not 0.0 <= self.haircut <= 1.0:
            raise ValueError(f"haircut is a fraction in [0, 1], got {self.haircut}")
        for name in ("threshold", "clip", "drawdown_multiple"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.k < 0.0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if not 0.0 < self.min_drawdown <= 1.0:
            raise ValueError(f"min_drawdown is a fraction in (0, 1], got {self.min_drawdown}")

    def drawdown_floor(self, expectation: Expectation) -> float:
        """The positive drawdown fraction past which the ``drawdown`` rule fires."""
        floor = self.drawdown_multiple * abs(expectation.max_drawdown)
        return min(1.0, max(floor, self.min_drawdown))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one ``detect`` call.

    ``statistic`` / ``threshold`` are those of the rule that fired (the drawdown rule's
    statistic is the live drawdown as a positive fraction, its threshold the floor), else
    the CUSUM's value at the last bar and its threshold. ``bars`` counts the bars judged:
    up to and including ``fired_at`` when it fired, else all of them; ``window`` is the
    open times of the first and last of them (both included). ``drawdown`` is the live
    record's deepest drawdown over those bars (a negative fraction), ``drawdown_floor`` the
    positive floor it was compared with.
    """

    fired: bool
    rule: str | None
    statistic: float
    threshold: float
    bars: int
    fired_at: pd.Timestamp | None
    window: tuple[pd.Timestamp, pd.Timestamp] | None
    drawdown: float
    drawdown_floor: float
    reason: str


def _validated(returns: pd.Series) -> np.ndarray:
    """The returns as float64, after the checks that make a verdict meaningful: bar open
    times in a strictly increasing UTC ``DatetimeIndex`` and finite values (a NaN bar is a
    scoring bug upstream, never silently a zero)."""
    if not isinstance(returns, pd.Series):
        raise ValueError(f"returns must be a pandas Series, got {type(returns).__name__}")
    if len(returns) == 0:
        return np.empty(0, dtype=np.float64)
    index = returns.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"returns must be indexed by bar open times, got {type(index).__name__}")
    if index.tz is None or str(index.tz) != "UTC":
        raise ValueError(f"bar open times must be UTC, got tz={index.tz}")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError("bar open times must be strictly increasing (sorted, no duplicates)")
    values = returns.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"return of the bar opened {index[first]} is {float(values[first])}; "
            f"{int(bad.sum())} non-finite return(s) in the record"
        )
    if values.min() < -1.0:
        first = int(np.argmax(values < -1.0))
        raise ValueError(
            f"return of the bar opened {index[first]} is {float(values[first])}: a bar cannot "
            "lose more than everything (-1)"
        )
    return values


def _cusum(values: np.ndarray, expectation: Expectation, config: DetectorConfig) -> np.ndarray:
    """``S_t = max(0, S_{t-1} + x_t)`` with ``x = clip((m - r) / σ) - k``, computed as the
    walk ``W_t = Σ x`` minus its running minimum (floored at 0): the same recursion, in
    numpy, and non-negative by construction (``W_t - min(W) ≥ 0`` exactly in floats)."""
    if len(values) == 0:
        return values
    reference = config.haircut * expectation.mean
    z = np.clip((reference - values) / expectation.std, -config.clip, config.clip)
    walk = np.cumsum(z - config.k)
    return walk - np.minimum(np.minimum.accumulate(walk), 0.0)


def cusum_path(returns: pd.Series, expectation: Expectation, config: DetectorConfig) -> pd.Series:
    """The CUSUM statistic after every bar (indexed like ``returns``, name ``cusum``), for
    the UI to plot against ``config.threshold``; raises ``ValueError`` on the same inputs as
    ``detect``."""
    values = _validated(returns)
    return pd.Series(_cusum(values, expectation, config), index=returns.index, name="cusum")


def _drawdowns(values: np.ndarray) -> np.ndarray:
    """Drawdown after every bar (``equity / running peak - 1``, equity starting at 1.0, a
    -1 after a total loss): the convention of ``backtest.metrics.max_drawdown_of``."""
    equity = np.cumprod(1.0 + values)
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    return equity / peak - 1.0


def _pct(value: float) -> str:
    return f"{value * 100:+.3g} %" if math.isfinite(value) else "n/a"


def _span(index: pd.DatetimeIndex, n: int) -> str:
    return f"{n} bars [{index[0]:%Y-%m-%d %H:%M}, {index[n - 1]:%Y-%m-%d %H:%M}]"


def detect(returns: pd.Series, expectation: Expectation, config: DetectorConfig) -> Verdict:
    """Judge the live record ``returns`` (per-bar net returns indexed by bar open times,
    UTC, starting after the last alarm: see the module docstring) against ``expectation``.

    Raises ``ValueError`` for a record that cannot be judged (NaN or infinite return: the
    message names the first bad bar; unsorted or non-UTC index); an empty record or one
    shorter than ``config.min_bars`` is judged "not fired" with that reason.
    """
    values = _validated(returns)
    floor = config.drawdown_floor(expectation)
    expected = config.haircut * expectation.mean
    n = len(values)
    if n == 0:
        return Verdict(False, None, 0.0, config.threshold, 0, None, None, 0.0, floor,
                       f"no live bars to judge against {expectation.label}")  # fmt: skip
    index = pd.DatetimeIndex(returns.index)
    path = _cusum(values, expectation, config)
    drawdown = _drawdowns(values)
    if n < config.min_bars:
        return Verdict(
            False,
            None,
            float(path[-1]),
            config.threshold,
            n,
            None,
            (index[0], index[-1]),
            float(drawdown.min()),
            floor,
            f"not judged: {_span(index, n)} < min_bars {config.min_bars} "
            f"(CUSUM {fmt_number(path[-1], 3)}, threshold {fmt_number(config.threshold, 3)})",
        )
    eligible = np.arange(n) >= config.min_bars - 1
    crossed = {
        CUSUM: np.flatnonzero(eligible & (path > config.threshold)),
        DRAWDOWN: np.flatnonzero(eligible & (drawdown < -floor)),
    }
    hits = {rule: int(at[0]) for rule, at in crossed.items() if len(at)}
    rule = min(hits, key=lambda r: (hits[r], r != CUSUM)) if hits else None
    last = hits[rule] if rule is not None else n - 1
    bars = last + 1
    live_mean = float(values[:bars].mean())
    deepest = float(drawdown[:bars].min())
    means = (
        f"live mean {_pct(live_mean)}/bar vs expected {_pct(expected)}/bar "
        f"(haircut {fmt_number(config.haircut, 3)} of backtest {_pct(expectation.mean)}/bar, "
        f"{expectation.label})"
    )
    dd_text = (
        f"drawdown {_pct(deepest)} vs floor {_pct(-floor)} "
        f"({fmt_number(config.drawdown_multiple, 3)} × backtest "
        f"{_pct(expectation.max_drawdown)}, at least {config.min_drawdown * 100:.3g} %)"
    )
    cusum_text = f"CUSUM {fmt_number(path[last], 3)}"
    threshold_text = fmt_number(config.threshold, 3)
    if rule == CUSUM:
        statistic, threshold = float(path[last]), config.threshold
        head = f"{cusum_text} > {threshold_text} over {_span(index, bars)}: {means}; {dd_text}"
    elif rule == DRAWDOWN:
        statistic, threshold = -float(drawdown[last]), floor
        head = f"{dd_text} over {_span(index, bars)}: {means}; {cusum_text} <= {threshold_text}"
    else:
        statistic, threshold = float(path[last]), config.threshold
        head = (
            f"not fired: {cusum_text} <= {threshold_text} over {_span(index, bars)}: "
            f"{means}; {dd_text}"
        )
    return Verdict(
        fired=rule is not None,
        rule=rule,
        statistic=statistic,
        threshold=threshold,
        bars=bars,
        fired_at=index[last] if rule is not None else None,
        window=(index[0], index[last]),
        drawdown=deepest,
        drawdown_floor=floor,
        reason=head,
    )


def alarms(
    returns: pd.Series,
    expectation: Expectation,
    config: DetectorConfig,
    cooldown: pd.Timedelta = NO_COOLDOWN,
) -> tuple[list[Verdict], Verdict]:
    """Every alarm of a record under the restart contract, and the verdict on the bars
    after the last one.

    Each alarm restarts the test on the bars strictly after it, so the alarms are a pure
    function of the record: the sensor needs no cursor, the UI shows the same alarms, and
    re-evaluating a tick cannot fire twice for one stretch. An alarm within ``cooldown``
    of the previous one is not counted (its evidence is restarted all the same).
    """
    found: list[Verdict] = []
    rest = returns
    while True:
        verdict = detect(rest, expectation, config)
        if not verdict.fired:
            return found, verdict
        assert verdict.fired_at is not None
        if not found or verdict.fired_at - found[-1].fired_at >= cooldown:  # type: ignore[operator]
            found.append(verdict)
        rest = rest[rest.index > verdict.fired_at]
