"""Features: causality, warm-up equivalence, label separation, labels, coverage, finiteness."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from clm_assets.features.engine import rolling_mean_std, rolling_sum
from clm_assets.features.indicators import (
    EARLIEST_VALID_BAR,
    FEATURE_NAMES,
    OUTPUT_COLUMNS,
    WARMUP_BARS,
    compute_features,
)
from clm_assets.features.labels import LABEL_NAMES, compute_labels
from clm_assets.features.schema import (
    FEATURE_PREFIX,
    LABEL_PREFIX,
    LABEL_RETURN,
    LABEL_SIGN,
    feature_columns,
    label_columns,
)
from clm_assets.sources.sample import SampleSource
from clm_assets_tests.factories import random_walk_bars

SYMBOL = "BTC-USD"
FEATURES = list(FEATURE_NAMES)


def gapped_walk(n: int, seed: int) -> pd.DataFrame:
    """``random_walk_bars`` where half the bars open a little away from the previous close.

    Exchange bars do this (the first trade of a bar is not the last of the one before), and
    some TA-Lib patterns need it: CDLSHOOTINGSTAR requires a body gap, which a walk whose
    open always equals the previous close never has.
    """
    bars = random_walk_bars(n, seed)
    rng = np.random.default_rng(seed + 1)
    gap = np.where(rng.random(n) < 0.5, 1.0, np.exp(rng.normal(0.0, 0.003, n)))
    bars["open"] = bars["open"] * gap
    bars["high"] = np.maximum(bars["high"], bars["open"])
    bars["low"] = np.minimum(bars["low"], bars["open"])
    return bars


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    return frame[FEATURES].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return gapped_walk(3000, seed=7)


@pytest.fixture(scope="module")
def walk_features(walk) -> pd.DataFrame:
    return compute_features(walk, SYMBOL, horizon=4)


# --- shape and names ---------------------------------------------------------------------


def test_output_layout(walk, walk_features):
    f = walk_features
    assert tuple(f.columns) == OUTPUT_COLUMNS
    assert len(f) == len(walk)
    assert f["open_time"].dtype == "datetime64[ns, UTC]"
    assert (f["open_time"].to_numpy() == walk["open_time"].to_numpy()).all()
    assert (f["symbol"] == SYMBOL).all()
    np.testing.assert_array_equal(f["close"].to_numpy(), walk["close"].to_numpy())
    assert all(f[c].dtype == np.float64 for c in (*FEATURES, *LABEL_NAMES))
    assert feature_columns(f) == FEATURES
    assert label_columns(f) == list(LABEL_NAMES)


def test_at_least_50_uniquely_named_features():
    assert isinstance(FEATURE_NAMES, tuple)
    assert len(FEATURE_NAMES) >= 50
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(name.startswith(FEATURE_PREFIX) for name in FEATURE_NAMES)


# --- (a) no look-ahead -------------------------------------------------------------------


def _perturb(bars: pd.DataFrame, t: int, mode: str, factor: float, seed: int) -> pd.DataFrame:
    """Change every bar after row ``t`` (OHLC kept consistent, prices positive)."""
    out = bars.copy()
    after = slice(t + 1, None)
    price_cols = ["open", "high", "low", "close"]
    if mode == "rescale":
        out.loc[out.index[after], price_cols] *= factor
        out.loc[out.index[after], "volume"] *= 1.0 / factor
    elif mode == "replace":
        other = random_walk_bars(len(bars), seed)
        for col in [*price_cols, "volume"]:
            out.loc[out.index[after], col] = other[col].to_numpy()[after] * factor
    elif mode == "spike":
        i = out.index[-1] if t + 1 >= len(out) else out.index[t + 1]
        out.loc[i, "high"] *= 1.0 + 50.0 * factor
        out.loc[i, "volume"] *= 1e4 * factor
    elif mode == "flat":  # a dead market: one price, nothing traded
        out.loc[out.index[after], price_cols] = float(out["close"].iloc[t]) * factor
        out.loc[out.index[after], "volume"] = 0.0
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(300, 1500),
    seed=st.integers(0, 10_000),
    cut=st.floats(0.0, 1.0),
    mode=st.sampled_from(["rescale", "replace", "spike", "flat"]),
    factor=st.one_of(st.floats(0.5, 0.95), st.floats(1.05, 2.0)),  # never the identity
    horizon=st.integers(1, 24),
)
def test_features_never_look_ahead(n, seed, cut, mode, factor, horizon):
    t = min(int(cut * n), n - 2)
    bars = gapped_walk(n, seed)
    perturbed = _perturb(bars, t, mode, factor, seed + 1)
    base = feature_matrix(compute_features(bars, SYMBOL, horizon))
    moved = feature_matrix(compute_features(perturbed, SYMBOL, horizon))
    # the perturbation reaches the features after t (or the check below would be vacuous)
    assert not np.array_equal(base[t + 1 :], moved[t + 1 :], equal_nan=True)
    # ... and none at or before t: exact equality, NaN == NaN
    assert np.array_equal(base[: t + 1], moved[: t + 1], equal_nan=True)


# --- (b) warm-up: a window starting WARMUP_BARS early equals all history ------------------


@pytest.mark.parametrize(("seed", "cut"), [(0, 900), (1, 1337), (2, 2000), (3, 2890)])
def test_warmup_window_matches_full_history(seed, cut):
    bars = gapped_walk(3000, seed)
    full = compute_features(bars, SYMBOL, horizon=4)
    end = min(cut + 24, len(bars))  # the partition: one day of hourly bars after the cut
    window = bars.iloc[cut - WARMUP_BARS : end].reset_index(drop=True)
    part = compute_features(window, SYMBOL, horizon=4)
    got = feature_matrix(part)[WARMUP_BARS:]
    want = feature_matrix(full)[cut:end]
    assert got.shape == want.shape and not np.isnan(want).any()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # labels inside the window use only the window's closes: exact where known
    known = ~np.isnan(part[LABEL_RETURN].to_numpy()[WARMUP_BARS:])
    assert known.sum() == (end - cut) - 4
    np.testing.assert_array_equal(
        part[LABEL_RETURN].to_numpy()[WARMUP_BARS:][known],
        full[LABEL_RETURN].to_numpy()[cut:end][known],
    )


def test_warmup_is_needed():
    """Without the warm-up the exponential indicators differ: WARMUP_BARS is not idle."""
    bars = gapped_walk(2000, 5)
    cut = 1500
    full = feature_matrix(compute_features(bars, SYMBOL, 4))[cut:]
    short = compute_features(bars.iloc[cut - 250 :].reset_index(drop=True), SYMBOL, 4)
    diff = np.abs(feature_matrix(short)[250:] - full)
    assert np.nanmax(diff[:, FEATURES.index("f_ema_50")]) > 1e-9


# --- (c) labels never leak into the features ---------------------------------------------


@pytest.mark.parametrize("horizon", [1, 4])
def test_labels_are_not_features(walk, horizon):
    frame = compute_features(walk, SYMBOL, horizon)
    assert not any(name.startswith(LABEL_PREFIX) for name in FEATURE_NAMES)
    assert set(LABEL_NAMES).isdisjoint(FEATURE_NAMES)
    label = frame[LABEL_RETURN].to_numpy()
    x = feature_matrix(frame)
    n = len(frame)
    for j, name in enumerate(FEATURES):
        for shift in range(-48, 49):  # feature[t] against label[t - shift]
            f = x[max(shift, 0) : n + min(shift, 0), j]
            lab = label[max(-shift, 0) : n - max(shift, 0)]
            ok = np.isfinite(f) & np.isfinite(lab)
            assert ok.sum() > 1000
            copy = np.allclose(f[ok], lab[ok], rtol=1e-9, atol=1e-12)
            assert not copy, f"{name} is label_fwd_return shifted by {shift}"
            if shift < horizon:  # label[t - shift] needs closes after t: must be unknowable
                corr = np.corrcoef(f[ok], lab[ok])[0, 1]
                assert not abs(corr) > 0.9, f"{name} tracks a future label ({shift=}, {corr=})"


# --- (e) labels --------------------------------------------------------------------------


@pytest.mark.parametrize("horizon", [1, 3, 24])
def test_labels_match_hand_computation(horizon):
    bars = random_walk_bars(400, 3)
    frame = compute_features(bars, SYMBOL, horizon)
    close = bars["close"].tolist()
    n = len(close)
    want = [close[t + horizon] / close[t] - 1.0 for t in range(n - horizon)]
    got = frame[LABEL_RETURN].to_numpy()
    np.testing.assert_allclose(got[: n - horizon], want, rtol=1e-15, atol=0)
    assert np.isnan(got[n - horizon :]).all() and len(got[n - horizon :]) == horizon
    assert not np.isnan(got[: n - horizon]).any()
    sign = frame[LABEL_SIGN].to_numpy()
    np.testing.assert_array_equal(sign[: n - horizon], np.sign(want))
    assert np.isnan(sign[n - horizon :]).all()
    pd.testing.assert_frame_equal(
        compute_labels(bars["close"], horizon), frame[list(LABEL_NAMES)], check_names=False
    )


def test_label_of_unchanged_close_is_zero_and_short_frames_are_all_null():
    bars = random_walk_bars(10, 0)
    bars.loc[5, ["open", "high", "low", "close"]] = bars.loc[3, "close"]
    frame = compute_features(bars, SYMBOL, horizon=2)
    assert frame[LABEL_RETURN].iloc[3] == 0.0 and frame[LABEL_SIGN].iloc[3] == 0.0
    assert compute_features(bars, SYMBOL, horizon=10)[list(LABEL_NAMES)].isna().all().all()
    assert compute_features(bars, SYMBOL, horizon=50)[list(LABEL_NAMES)].isna().all().all()


@pytest.mark.parametrize("horizon", [0, -1, 1.5, True, "4", None])
def test_horizon_must_be_a_positive_integer(horizon):
    with pytest.raises(ValueError, match="horizon"):
        compute_features(random_walk_bars(50, 0), SYMBOL, horizon)


# --- (f) every feature carries information after the warm-up ------------------------------


def test_no_feature_constant_or_nan_after_warmup(walk_features):
    x = feature_matrix(walk_features)
    head, body = x[:EARLIEST_VALID_BAR], x[EARLIEST_VALID_BAR:]
    assert np.isnan(head).any(axis=1).all(), "a row before EARLIEST_VALID_BAR is complete"
    nan_cols = [FEATURES[j] for j in np.flatnonzero(np.isnan(body).any(axis=0))]
    assert nan_cols == []
    constant = [FEATURES[j] for j in range(x.shape[1]) if np.unique(body[:, j]).size < 2]
    assert constant == []
    # plain random walk (open == previous close) too, except the gap-only pattern
    plain = feature_matrix(compute_features(random_walk_bars(3000, 7), SYMBOL, 4))
    plain = plain[EARLIEST_VALID_BAR:]
    assert not np.isnan(plain).any()
    constant = [FEATURES[j] for j in range(x.shape[1]) if np.unique(plain[:, j]).size < 2]
    assert set(constant) <= {"f_cdl_shootingstar"}  # needs a body gap: see gapped_walk


def test_feature_ranges(walk_features):
    f = walk_features.iloc[EARLIEST_VALID_BAR:]
    unit = ["f_rsi_14", "f_stoch_k", "f_stochrsi_d", "f_mfi_14", "f_adx_14", "f_aroon_up_25"]
    unit += ["f_ultosc", "f_body_range", "f_upper_shadow", "f_lower_shadow"]
    for name in unit:
        assert f[name].between(-1e-12, 1 + 1e-12).all(), name
    for name in ["f_bop", "f_cmo_14", "f_aroonosc_25", "f_obv_chg_24", "f_ad_chg_24"]:
        assert f[name].between(-1 - 1e-12, 1 + 1e-12).all(), name
    for name in ["f_cdl_doji", "f_cdl_engulfing", "f_cdl_hammer", "f_cdl_shootingstar"]:
        assert f[name].isin([-1.0, -0.8, 0.0, 0.8, 1.0]).all(), name
    for name in ["f_hour_sin", "f_hour_cos", "f_dow_sin", "f_dow_cos"]:
        assert f[name].between(-1, 1).all(), name
    # level-free: moving averages sit within a few percent of close on hourly 0.8% moves
    for name in ["f_sma_10", "f_ema_12", "f_kama_10", "f_t3_5", "f_dema_20", "f_tema_20"]:
        assert f[name].abs().max() < 0.2, name


def test_calendar_features_match_timestamps():
    bars = random_walk_bars(500, 0, start="1969-12-25 13:37", freq="17min")
    f = compute_features(bars, SYMBOL, 1)
    t = bars["open_time"].dt
    hour = (t.hour + t.minute / 60.0) / 24.0 * 2 * np.pi
    dow = t.dayofweek / 7.0 * 2 * np.pi
    np.testing.assert_allclose(f["f_hour_sin"], np.sin(hour), atol=1e-12)
    np.testing.assert_allclose(f["f_hour_cos"], np.cos(hour), atol=1e-12)
    np.testing.assert_allclose(f["f_dow_sin"], np.sin(dow), atol=1e-12)
    np.testing.assert_allclose(f["f_dow_cos"], np.cos(dow), atol=1e-12)


def test_return_features_by_hand():
    bars = random_walk_bars(300, 2)
    f = compute_features(bars, SYMBOL, 1)
    logc = np.log(bars["close"].to_numpy())
    for k in (1, 2, 4, 8, 24):
        got = f[f"f_logret_{k}"].to_numpy()
        assert np.isnan(got[:k]).all()
        np.testing.assert_allclose(got[k:], logc[k:] - logc[:-k], rtol=1e-12, atol=1e-15)
    r1 = f["f_logret_1"].to_numpy()
    for k in range(1, 6):
        got = f[f"f_ret_lag_{k}"].to_numpy()
        assert np.isnan(got[: k + 1]).all()
        np.testing.assert_array_equal(got[k:], r1[:-k])
    rvol = np.sqrt(pd.Series(r1).pow(2).rolling(24).sum().to_numpy())
    np.testing.assert_allclose(f["f_rvol_24"], rvol, rtol=1e-12, atol=0)


def test_bollinger_and_stddev_equal_talib(walk, walk_features):
    close = walk["close"].to_numpy()
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA)
    f = walk_features
    np.testing.assert_allclose(f["f_bb_width_20"], (upper - lower) / middle, rtol=1e-9)
    np.testing.assert_allclose(f["f_bb_pctb_20"], (close - lower) / (upper - lower), rtol=1e-9)
    np.testing.assert_allclose(f["f_stddev_20"], talib.STDDEV(close, 20, 1.0) / close, rtol=1e-9)


def test_rolling_stats_stay_exact_after_a_volatile_stretch():
    """Where TA-Lib's whole-series running sums drift, the segmented sums stay exact."""
    rng = np.random.default_rng(11)
    n = 6000
    sigma = np.where((np.arange(n) // 300) % 2 == 0, 0.0003, 0.02)  # calm / wild regimes
    x = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, n) * sigma))
    win = sliding_window_view(x, 20)
    mean, std = rolling_mean_std(x, 20)
    assert np.isnan(mean[:19]).all() and np.isnan(std[:19]).all()
    np.testing.assert_allclose(mean[19:], win.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(std[19:], win.std(axis=1), rtol=1e-8)
    ta_std = talib.STDDEV(x, 20, 1.0)[19:]
    assert np.max(np.abs(ta_std / win.std(axis=1) - 1)) > np.max(np.abs(std[19:] / win.std(1) - 1))
    np.testing.assert_allclose(rolling_sum(x, 20)[19:], win.sum(axis=1), rtol=1e-14)
    flat = np.r_[np.linspace(1.0, 2.0, 30), np.full(30, 7.3)]
    assert (rolling_mean_std(flat, 20)[1][-11:] == 0.0).all()


# --- (g) finite values only (NaN where undefined, never inf) -------------------------------


def test_degenerate_windows_take_their_limiting_value_not_nan_or_inf(walk_features):
    """Real markets have bars without range and hours without trades (27 of each in the
    bundled sample); models refuse NaN, so those take their natural limiting values."""
    assert not np.isinf(feature_matrix(walk_features)).any()
    bars = gapped_walk(800, 9)
    idx = bars.index
    bars.loc[idx[300:340], ["open", "high", "low", "close"]] = 123.0  # flat, high == low
    bars.loc[idx[300:360], "volume"] = 0.0  # nothing traded
    bars.loc[idx[500], "volume"] = 0.0
    frame = compute_features(bars, SYMBOL, 4)
    x = feature_matrix(frame)
    assert not np.isinf(x).any()
    assert not np.isnan(x[EARLIEST_VALID_BAR:]).any()
    assert (frame["f_body_range"].iloc[310:340] == 0.0).all()
    assert (frame["f_upper_shadow"].iloc[310:340] == 0.0).all()
    assert (frame["f_volume_z_24"].iloc[330:360] == 0.0).all()
    assert (frame["f_obv_chg_24"].iloc[330:360] == 0.0).all()
    assert (frame["f_mfi_14"].iloc[320:360] == 0.5).all()
    assert (frame["f_bb_pctb_20"].iloc[330:340] == 0.5).all()
    assert (frame["f_stddev_20"].iloc[330:340] == 0.0).all()


def test_the_bundled_sample_has_no_nan_feature_after_warm_up():
    bars = SampleSource().fetch(
        "BTC-USD", "1h", pd.Timestamp("2017-07-02", tz="UTC"), pd.Timestamp("2019-01-01", tz="UTC")
    )
    x = feature_matrix(compute_features(bars, "BTC-USD", 4))
    assert np.isfinite(x[EARLIEST_VALID_BAR:]).all()


def test_level_free_features_ignore_the_price_and_volume_scale(walk, walk_features):
    """A coin priced at 1e-6 gets the same features (no absolute thresholds in the maths)."""
    tiny = walk.copy()
    tiny[["open", "high", "low", "close"]] *= 1e-6
    tiny["volume"] *= 1e-6
    got = feature_matrix(compute_features(tiny, SYMBOL, 4))
    np.testing.assert_allclose(got, feature_matrix(walk_features), rtol=1e-7, atol=1e-10)


# --- inputs ------------------------------------------------------------------------------


def test_empty_and_short_frames():
    empty = compute_features(random_walk_bars(10, 0).iloc[:0], SYMBOL, 1)
    assert tuple(empty.columns) == OUTPUT_COLUMNS and len(empty) == 0
    for n in (1, 2, 30, EARLIEST_VALID_BAR):
        frame = compute_features(random_walk_bars(n, 0), SYMBOL, 1)
        x = feature_matrix(frame)
        assert x.shape == (n, len(FEATURES)) and not np.isinf(x).any()
        assert np.isnan(x).any(axis=1).all()


def test_index_of_the_input_is_irrelevant():
    bars = random_walk_bars(400, 4)
    shifted = bars.set_index(bars.index + 1000)
    a = compute_features(bars, SYMBOL, 2)
    b = compute_features(shifted, SYMBOL, 2)
    pd.testing.assert_frame_equal(a, b)


def _bad_inputs():
    bars = random_walk_bars(50, 0)
    yield "unsorted", bars.iloc[::-1]
    yield "duplicate", pd.concat([bars.iloc[:10], bars.iloc[9:]], ignore_index=True)
    naive = bars.copy()
    naive["open_time"] = naive["open_time"].dt.tz_localize(None)
    yield "naive", naive
    for col, value in [("close", np.nan), ("high", 0.0), ("low", -1.0), ("volume", -1.0)]:
        bad = bars.copy()
        bad.loc[7, col] = value
        yield f"{col}={value}", bad
    inf = bars.copy()
    inf.loc[7, "open"] = np.inf
    yield "inf", inf
    other = bars.assign(symbol=[SYMBOL] * 49 + ["ETH-USD"])
    yield "two symbols", other
    yield "no volume column", bars.drop(columns="volume")


@pytest.mark.parametrize(
    ("case", "bars"), list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_inputs_are_rejected(case, bars):
    with pytest.raises(ValueError):
        compute_features(bars, SYMBOL, 1)


def test_benchmark_runs_and_reports():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run(n_bars=3000, repeats=1)
    assert {"bars", "features_s", "talib_s", "bars_per_s", "ratio_vs_talib"} <= r.keys()
    assert r["bars"] == 3000 and r["features_s"] > 0 and r["talib_s"] > 0
    assert r["bars_per_s"] == pytest.approx(3000 / r["features_s"])
