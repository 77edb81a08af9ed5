"""Real neuralforecast N-HiTS / PatchTST behind ``TradingModel``, trained tiny for speed."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clm_assets.features.schema import feature_columns
from clm_assets.models.base import ModelError
from clm_assets.models.neural import NeuralForecastModel, NHITSModel, PatchTSTModel
from clm_assets_tests.factories import simple_feature_frame

HORIZON = 4
INPUT_SIZE = 24
N_ROWS = 600
SEED = 3
TINY: dict[str, dict[str, Any]] = {
    "nhits": {"input_size": INPUT_SIZE, "max_steps": 12, "mlp_units": [[64, 64]] * 3},
    "patchtst": {"input_size": INPUT_SIZE, "max_steps": 12},
}
CLASSES: dict[str, type[NeuralForecastModel]] = {"nhits": NHITSModel, "patchtst": PatchTSTModel}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simple_feature_frame(N_ROWS, seed=0, horizon=HORIZON)


@pytest.fixture(scope="module", params=["nhits", "patchtst"])
def fitted(request, frame, tmp_path_factory) -> dict[str, Any]:
    """One model per family, fitted once, in an empty working directory."""
    family = request.param
    cwd = tmp_path_factory.mktemp(f"cwd-{family}")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        model = CLASSES[family](TINY[family], seed=SEED)
        model.fit(frame, HORIZON)
        predictions = model.predict(frame)
    return {
        "family": family,
        "model": model,
        "predictions": predictions,
        "cwd_after_fit": sorted(os.listdir(cwd)),
    }


def test_card_records_training(fitted, frame):
    card = fitted["model"].card
    assert card.family == fitted["family"]
    assert card.horizon == HORIZON and card.seed == SEED
    expected = feature_columns(frame) if fitted["family"] == "nhits" else []
    assert card.feature_columns == expected
    assert card.params["input_size"] == INPUT_SIZE
    assert card.params["scale"] > 0 and math.isfinite(card.params["scale"])
    assert 0 < card.rows <= len(frame)
    assert card.train_start < card.train_end
    assert len(card.data_hash) == 64
    assert {"neuralforecast", "torch", "pytorch-lightning"} <= set(card.library_versions)
    assert fitted["model"].train_seconds > 0
    assert card.rows_unlabeled == 0  # the target is the close's log return, not the label
    assert len(card.loss_curve) == TINY[fitted["family"]]["max_steps"]
    assert all(math.isfinite(x) for x in card.loss_curve)


def test_positions_in_range_and_null_without_history(fitted, frame):
    out = fitted["predictions"]
    assert list(out.columns) == ["open_time", "score", "position"]
    assert len(out) == len(frame)
    assert (out["open_time"].to_numpy() == frame["open_time"].to_numpy()).all()
    # row 0 has no log return; row t needs INPUT_SIZE earlier rows
    assert out["position"].iloc[:INPUT_SIZE].isna().all()
    rest = out["position"].iloc[INPUT_SIZE:]
    assert rest.notna().all()
    assert rest.between(-1, 1).all()
    assert rest.std() > 0
    scale = fitted["model"].card.params["scale"]
    np.testing.assert_allclose(rest, np.tanh(out["score"].iloc[INPUT_SIZE:] / scale))


def test_missing_features_null_the_windows_that_contain_them(fitted, frame):
    holed = frame.copy()
    holed.loc[300, "f_vol_24"] = np.nan
    out = fitted["model"].predict(holed)
    if fitted["family"] == "patchtst":  # reads no features: nothing changes
        np.testing.assert_array_equal(out["score"], fitted["predictions"]["score"])
        return
    affected = list(range(300, 300 + INPUT_SIZE))
    assert out["position"].iloc[affected].isna().all()
    kept = out.index.difference(affected)[INPUT_SIZE:]
    np.testing.assert_array_equal(out["score"].loc[kept], fitted["predictions"]["score"].loc[kept])


def test_bytes_round_trip_predicts_identically(fitted, frame):
    model = fitted["model"]
    blob = model.to_bytes()
    restored = type(model).from_bytes(blob)
    assert restored.card == model.card
    np.testing.assert_allclose(
        restored.predict(frame)["score"], fitted["predictions"]["score"], rtol=1e-6, atol=0
    )
    with pytest.raises(ModelError, match="not"):
        (PatchTSTModel if fitted["family"] == "nhits" else NHITSModel).from_bytes(blob)


def test_same_data_and_seed_give_identical_predictions(fitted, frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = CLASSES[fitted["family"]](TINY[fitted["family"]], seed=SEED)
    np.random.seed(11)
    again.fit(frame, HORIZON)
    # neuralforecast reseeds the global generators; the model puts them back
    assert np.random.random() == np.random.RandomState(11).random()
    assert again.card.loss_curve == fitted["model"].card.loss_curve
    np.testing.assert_array_equal(again.predict(frame)["score"], fitted["predictions"]["score"])


def test_no_look_ahead(fitted, frame):
    t = 400
    rng = np.random.default_rng(1)
    later = frame.index > t
    changed = frame.copy()
    changed.loc[later, "close"] *= np.exp(rng.normal(0, 0.05, later.sum()))
    for column in feature_columns(frame):
        changed.loc[later, column] += rng.normal(0, 1.0, later.sum())
    model = fitted["model"]
    base = fitted["predictions"]["score"].iloc[: t + 1]
    perturbed = model.predict(changed)["score"]
    np.testing.assert_allclose(perturbed.iloc[: t + 1], base, rtol=1e-6, atol=1e-12)
    assert not np.allclose(perturbed.iloc[t + 1 :], fitted["predictions"]["score"].iloc[t + 1 :])
    truncated = model.predict(frame.iloc[: t + 1])["score"]
    np.testing.assert_allclose(truncated, base, rtol=1e-6, atol=1e-12)


def test_symbols_are_separate_series_and_rows_keep_their_order(fitted, frame):
    other = simple_feature_frame(N_ROWS, seed=7, horizon=HORIZON, symbol="ETH-USD")
    mixed = pd.concat([frame, other], ignore_index=True).sort_values("open_time", kind="stable")
    out = fitted["model"].predict(mixed)
    assert (out.index == mixed.index).all()
    btc = (mixed["symbol"] == "BTC-USD").to_numpy()
    np.testing.assert_allclose(
        out["score"][btc].to_numpy(), fitted["predictions"]["score"].to_numpy(), rtol=1e-6
    )
    eth = out["position"][~btc]
    assert eth.iloc[:INPUT_SIZE].isna().all() and eth.iloc[INPUT_SIZE:].notna().all()


def test_nothing_written_to_the_working_directory(fitted, frame, tmp_path, monkeypatch):
    assert fitted["cwd_after_fit"] == []
    monkeypatch.chdir(tmp_path)
    model = fitted["model"]
    type(model).from_bytes(model.to_bytes()).predict(frame.iloc[:100])
    assert os.listdir(tmp_path) == []
    assert not os.path.exists(tmp_path / "lightning_logs")


@pytest.mark.parametrize("family", ["nhits", "patchtst"])
def test_too_few_rows_raise_model_error(family, frame):
    model = CLASSES[family](TINY[family], seed=SEED)
    with pytest.raises(ModelError, match="too few rows"):
        model.fit(frame.iloc[: INPUT_SIZE + HORIZON - 1], HORIZON)
    assert model.card is None


def test_library_failure_raises_model_error(frame):
    model = PatchTSTModel({**TINY["patchtst"], "max_steps": 1, "learning_rate": -1.0}, seed=SEED)
    with pytest.raises(ModelError, match="neuralforecast training failed"):
        model.fit(frame, HORIZON)


def test_unfitted_and_misfit_inputs_raise_model_error(fitted, frame):
    with pytest.raises(ModelError, match="before fit"):
        NHITSModel().predict(frame)
    with pytest.raises(ModelError, match="unfitted"):
        PatchTSTModel().to_bytes()
    if fitted["family"] == "nhits":
        with pytest.raises(ModelError, match="lacks trained features"):
            fitted["model"].predict(frame.drop(columns=["f_hour"]))
