"""Backtest metrics against independent numpy formulas on the same returns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from clm_assets.backtest import metrics as M
from clm_assets.backtest.engine import run_backtest
from clm_assets.sources.intervals import bars_per_year
from clm_assets_tests.factories import random_walk_bars

HOURLY = bars_per_year("1h")


def _times(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    rng = np.random.default_rng(42)
    r = rng.standard_t(4, 2000) * 0.006 + 0.0002
    r[0] = -0.01  # a loss on the first bar: the drawdown must count from the 1.0 start
    return r


@pytest.fixture(scope="module")
def strategy():
    bars = random_walk_bars(1500, seed=5)
    rng = np.random.default_rng(6)
    pos = np.round(np.clip(rng.normal(0.1, 0.8, len(bars)), -1, 1) * 2) / 2
    result = run_backtest(bars.open_time, bars.open, bars.close, pos, fee_bps=10.0)
    return bars, pos, result


def test_hourly_bars_per_year():
    assert HOURLY == 8760.0


def test_return_metrics_equal_numpy_formulas(returns):
    r = returns
    got = M.return_metrics(r, _times(len(r)), HOURLY)
    n, p = len(r), HOURLY
    mean, std = r.mean(), r.std(ddof=1)
    # sharpe = mean / std(ddof=1) * sqrt(P); vol = std(ddof=1) * sqrt(P)
    assert got["sharpe"] == pytest.approx(mean / std * math.sqrt(p), rel=1e-10)
    assert got["volatility"] == pytest.approx(std * math.sqrt(p), rel=1e-10)
    # sortino = mean / sqrt(sum(min(r, 0)^2) / n) * sqrt(P)
    downside = math.sqrt(np.sum(np.minimum(r, 0) ** 2) / n)
    assert got["sortino"] == pytest.approx(mean / downside * math.sqrt(p), rel=1e-10)
    # cagr = prod(1 + r) ** (P / n) - 1
    wealth = np.prod(1 + r)
    assert got["cagr"] == pytest.approx(wealth ** (p / n) - 1, rel=1e-10)
    assert got["total_return"] == pytest.approx(wealth - 1, rel=1e-12)
    # max drawdown = min(equity / running max - 1), equity starting at 1.0 before bar 1
    equity = np.concatenate(([1.0], np.cumprod(1 + r)))
    mdd = np.min(equity / np.maximum.accumulate(equity)) - 1
    assert got["max_drawdown"] == pytest.approx(mdd, rel=1e-10)
    assert got["max_drawdown"] < 0
    # win rate = positive / non-zero bars; profit factor = sum(r >= 0) / |sum(r < 0)|
    assert got["win_rate"] == pytest.approx(np.sum(r > 0) / np.sum(r != 0), rel=1e-12)
    pf = r[r >= 0].sum() / abs(r[r < 0].sum())
    assert got["profit_factor"] == pytest.approx(pf, rel=1e-12)
    assert got["n_bars"] == n


def test_annualization_8760_vs_252(returns):
    t = _times(len(returns))
    hourly = M.return_metrics(returns, t, HOURLY)
    daily_default = M.return_metrics(returns, t, 252.0)
    ratio = math.sqrt(8760 / 252)
    assert hourly["sharpe"] / daily_default["sharpe"] == pytest.approx(ratio, rel=1e-12)
    assert hourly["sortino"] / daily_default["sortino"] == pytest.approx(ratio, rel=1e-12)
    assert hourly["volatility"] / daily_default["volatility"] == pytest.approx(ratio, rel=1e-12)
    assert M.periods_per_year("1h") == 8760.0 and M.periods_per_year("1d") == 365.0


def test_win_rate_ignores_zero_bars():
    r = np.array([0.01, 0.0, -0.01, 0.0, 0.02])
    got = M.return_metrics(r, _times(5), HOURLY)
    assert got["win_rate"] == pytest.approx(2 / 3)  # not 2/5: zero bars are left out
    assert got["profit_factor"] == pytest.approx(0.03 / 0.01)


def _psr_by_hand(r: np.ndarray, sr_star: float) -> float:
    """PSR with the paper's sample moments, written out with numpy only."""
    sr = r.mean() / r.std(ddof=1)
    d = r - r.mean()
    m2, m3, m4 = np.mean(d**2), np.mean(d**3), np.mean(d**4)
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    se = math.sqrt((1 - skew * sr + (kurt - 1) / 4 * sr**2) / (len(r) - 1))
    return float(norm.cdf((sr - sr_star) / se))


def test_psr_formula_and_limits(returns):
    rng = np.random.default_rng(0)
    assert M.probabilistic_sharpe_ratio(returns, 0.01) == pytest.approx(
        _psr_by_hand(returns, 0.01), rel=1e-12
    )
    own_sr = M.per_bar_sharpe(returns)
    assert M.probabilistic_sharpe_ratio(returns, own_sr) == pytest.approx(0.5, abs=1e-12)
    strong = rng.normal(0.002, 0.01, 2000)  # per-bar SR ~0.2 over 2000 bars
    assert M.probabilistic_sharpe_ratio(strong) > 0.95
    weak = rng.normal(-0.001, 0.01, 2000)
    assert M.probabilistic_sharpe_ratio(weak) < 0.5
    # against a better incumbent the same strong series is unlikely to be better
    assert M.probabilistic_sharpe_ratio(strong, own_sr + 0.3) < 0.05
    assert M.probabilistic_sharpe_ratio(np.zeros(50)) is None


def test_quantstats_psr_uses_bias_corrected_moments(returns):
    """quantstats' PSR (SR* = 0 only) is the same formula with pandas' bias-corrected
    skew/kurtosis; the paper's sample moments differ from it only at O(1/n)."""
    qs = M._qs()
    s = pd.Series(returns, index=_times(len(returns)))
    theirs = float(qs.probabilistic_sharpe_ratio(s))
    ours_unbiased = M.probabilistic_sharpe_ratio(returns, moments="unbiased")
    ours_sample = M.probabilistic_sharpe_ratio(returns)
    assert theirs == pytest.approx(ours_unbiased, rel=1e-12)
    assert ours_sample != ours_unbiased
    assert abs(ours_sample - theirs) < 1e-3


def test_metrics_table_keys_strategy_and_baselines(strategy):
    bars, pos, result = strategy
    incumbent = run_backtest(bars.open_time, bars.open, bars.close, np.roll(pos, 3))
    realized = (bars["close"].shift(-1) / bars["close"] - 1).to_numpy()
    table = M.metrics_table(
        result, "1h", score=pos, realized=realized, incumbent_returns=incumbent.returns
    )
    assert tuple(table) == M.TABLE_KEYS
    assert all(v is None or isinstance(v, float) for v in table.values())

    r = result.returns
    assert table["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(8760), 1e-10)
    assert table["total_return"] == pytest.approx(result.equity[-1] - 1, rel=1e-12)
    assert table["exposure"] == pytest.approx(np.mean(pos[:-1] != 0))
    trades = result.trades["return"].to_numpy()
    assert table["trade_count"] == len(trades) > 10
    assert table["avg_trade_return"] == pytest.approx(trades.mean(), rel=1e-12)
    assert table["turnover"] == pytest.approx(np.mean(result.costs) / 0.001, rel=1e-9)
    sr_star = incumbent.returns.mean() / incumbent.returns.std(ddof=1)
    assert table["psr_vs_incumbent"] == pytest.approx(_psr_by_hand(r, sr_star), rel=1e-10)
    assert table["pred_count"] == len(bars) - 1  # the last label is still pending

    # buy-and-hold: long 1 from the open of bar 1 to the last close, one 10 bps entry fee
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    assert table["bh_total_return"] == pytest.approx(c[-1] / o[1] / 1.001 - 1, rel=1e-10)
    assert table["bh_exposure"] == 1.0 and table["bh_trade_count"] == 1.0
    # flat: zero returns; ratios are undefined (None), levels are exactly zero
    for key in ("sharpe", "sortino", "win_rate", "profit_factor", "psr", "avg_trade_return"):
        assert table[f"flat_{key}"] is None, key
    for key in ("total_return", "cagr", "volatility", "max_drawdown", "exposure", "turnover"):
        assert table[f"flat_{key}"] == 0.0, key
    assert table["flat_trade_count"] == 0.0


def test_metrics_table_without_predictions_or_incumbent(strategy):
    _, _, result = strategy
    table = M.metrics_table(result, "1h")
    assert tuple(table) == M.TABLE_KEYS
    assert table["psr_vs_incumbent"] is None
    assert all(table[k] is None for k in M.PREDICTION_KEYS)
    with pytest.raises(M.MetricsError, match="both"):
        M.metrics_table(result, "1h", score=result.position)


def test_classification_and_regression_hand_case():
    score = np.array([0.5, -0.2, 0.1, 0.3, -0.4, 0.0, 0.7])
    realized = np.array([0.01, 0.02, -0.01, 0.03, -0.02, 0.01, np.nan])  # last: pending
    got = M.prediction_metrics(score, realized)
    assert got["pred_count"] == 6
    # predicted up: rows 0, 2, 3; realized up: rows 0, 1, 3, 5; TP = rows 0, 3
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 4)
    assert got["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))  # = 4/7
    assert got["f1"] == pytest.approx(4 / 7)
    # signs: score [+, -, +, +, -, 0] vs realized [+, +, -, +, -, +]: rows 0, 3, 4 agree
    assert got["accuracy"] == pytest.approx(3 / 6)
    # |errors| = 0.49, 0.22, 0.11, 0.27, 0.38, 0.01
    assert got["mae"] == pytest.approx(1.48 / 6)
    sq = 0.49**2 + 0.22**2 + 0.11**2 + 0.27**2 + 0.38**2 + 0.01**2  # = 0.518
    assert got["rmse"] == pytest.approx(math.sqrt(sq / 6))
    s, y = score[:6], realized[:6]
    ds, dy = s - s.mean(), y - y.mean()
    pearson = np.sum(ds * dy) / math.sqrt(np.sum(ds**2) * np.sum(dy**2))
    assert got["pearson"] == pytest.approx(pearson, rel=1e-12)


def test_prediction_metrics_undefined_and_invalid():
    got = M.prediction_metrics([-0.1, -0.2, -0.3], [-0.01, -0.02, -0.03])
    assert got["accuracy"] == 1.0
    assert got["precision"] is None and got["recall"] is None and got["f1"] is None
    assert M.prediction_metrics([0.1, 0.1], [0.01, 0.02])["pearson"] is None
    with pytest.raises(M.MetricsError, match="score is NaN"):
        M.prediction_metrics([0.1, np.nan], [0.01, 0.02])


def test_returns_quantstats_would_misread_as_prices_raise():
    with pytest.raises(M.MetricsError, match="prices"):
        M.return_metrics(np.array([0.5, 1.2, 0.0]), _times(3), HOURLY)


def test_single_bar_has_no_dispersion_metrics():
    got = M.return_metrics(np.array([0.01]), _times(1), HOURLY)
    assert got["sharpe"] is None and got["volatility"] is None
    assert got["total_return"] == pytest.approx(0.01)


def test_max_drawdown_of_equals_the_quantstats_convention(returns):
    table = M.return_metrics(returns, _times(len(returns)), HOURLY)
    assert M.max_drawdown_of(returns) == pytest.approx(table["max_drawdown"], abs=1e-12)
    assert M.max_drawdown_of(np.array([0.1, 0.2])) == 0.0
    assert M.max_drawdown_of(np.zeros(0)) == 0.0


def test_deflated_sharpe_is_the_psr_against_the_expected_best_of_n_null_trials(returns):
    n = len(returns)
    sr0 = math.sqrt(1.0 / (n - 1)) * M.expected_max_sharpe(5)
    assert M.deflated_sharpe_ratio(returns, 5) == pytest.approx(
        M.probabilistic_sharpe_ratio(returns, sr0), abs=1e-12
    )
    # the expected maximum of N standard normals, by simulation
    draws = np.random.default_rng(0).standard_normal((200_000, 5)).max(axis=1)
    assert M.expected_max_sharpe(5) == pytest.approx(draws.mean(), abs=0.03)
    assert M.expected_max_sharpe(1) == 0.0
    assert M.deflated_sharpe_ratio(np.ones(10) * 0.01, 5) is None  # constant: undefined
    with pytest.raises(M.MetricsError, match="n_trials"):
        M.expected_max_sharpe(0)
