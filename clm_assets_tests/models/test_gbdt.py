"""XGBoost and LightGBM models: contract, lineage, determinism, errors and a learnable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN, feature_columns
from clm_assets.models.base import ModelCard, ModelError
from clm_assets.models.gbdt import MIN_TRAIN_ROWS, GBDTModel, LightGBMModel, XGBoostModel
from clm_assets_tests.factories import simple_feature_frame

FAMILIES = [XGBoostModel, LightGBMModel]
FAST = {"n_estimators": 30}
# one thread each: the suite shares two cores with other work, and OpenMP spin-waits when
# oversubscribed
ONE_THREAD = {"xgboost": {"nthread": 1}, "lightgbm": {"num_threads": 1}}
HORIZON = 4

family = pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.family)


def make(cls: type[GBDTModel], seed: int = 0, **params) -> GBDTModel:
    return cls({**FAST, **ONE_THREAD[cls.family], **params}, seed=seed)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simple_feature_frame(600, seed=3, horizon=HORIZON)


@pytest.fixture(scope="module")
def fitted(frame) -> dict[str, GBDTModel]:
    models = {}
    for cls in FAMILIES:
        model = make(cls, seed=7)
        model.fit(frame, HORIZON)
        models[cls.family] = model
    return models


def signal_frame(n: int, seed: int) -> pd.DataFrame:
    """Labels a deterministic function of one feature: the forward return is ``f_ret_1``
    itself, as if that column leaked the future. Rows whose label was pending stay pending."""
    frame = simple_feature_frame(n, seed=seed, horizon=HORIZON)
    known = frame[LABEL_RETURN].notna()
    frame.loc[known, LABEL_RETURN] = frame.loc[known, "f_ret_1"]
    frame.loc[known, LABEL_SIGN] = np.sign(frame.loc[known, "f_ret_1"])
    return frame


def accuracy(model: GBDTModel, frame: pd.DataFrame) -> float:
    pred = model.predict(frame)
    rows = frame[LABEL_SIGN].notna() & (frame[LABEL_SIGN] != 0)
    assert pred.loc[rows, "position"].notna().all()
    called_up = pred.loc[rows, "position"] > 0
    return float((called_up == (frame.loc[rows, LABEL_SIGN] > 0)).mean())


# -- predictions and serialisation --------------------------------------------------------


@family
def test_predictions_are_probabilities_and_positions_in_range(cls, fitted, frame):
    pred = fitted[cls.family].predict(frame)
    assert list(pred.columns) == ["open_time", "score", "position"]
    assert len(pred) == len(frame)
    assert pred.index.equals(frame.index)
    assert (pred["open_time"].to_numpy() == frame["open_time"].to_numpy()).all()
    assert pred["score"].between(0.0, 1.0).all()
    assert pred["position"].between(-1.0, 1.0).all()
    np.testing.assert_allclose(pred["position"], 2.0 * pred["score"] - 1.0)
    assert pred["position"].std() > 0  # the trees split: not one constant guess


@family
def test_bytes_round_trip_gives_identical_predictions_and_card(cls, fitted, frame):
    model = fitted[cls.family]
    blob = model.to_bytes()
    loaded = cls.from_bytes(blob)
    assert loaded.card == model.card
    assert loaded.params == model.params
    assert loaded.seed == model.seed
    pd.testing.assert_frame_equal(loaded.predict(frame), model.predict(frame), check_exact=True)
    assert loaded._payload() == model._payload()


def test_bytes_of_one_family_do_not_load_as_the_other(fitted):
    with pytest.raises(ModelError, match="hold a xgboost model, not lightgbm"):
        LightGBMModel.from_bytes(fitted["xgboost"].to_bytes())
    with pytest.raises(ModelError, match="hold a lightgbm model, not xgboost"):
        XGBoostModel.from_bytes(fitted["lightgbm"].to_bytes())


@family
def test_same_data_and_seed_give_identical_model(cls, fitted, frame):
    again = make(cls, seed=7)
    card = again.fit(frame, HORIZON)
    assert again._payload() == fitted[cls.family]._payload()
    pd.testing.assert_frame_equal(
        again.predict(frame), fitted[cls.family].predict(frame), check_exact=True
    )
    assert card.data_hash == fitted[cls.family].card.data_hash


@family
def test_default_two_threads_are_deterministic_too(cls, frame):
    first, second = cls(FAST, seed=5), cls(FAST, seed=5)  # default thread count: 2
    first.fit(frame, HORIZON)
    second.fit(frame, HORIZON)
    assert first._payload() == second._payload()


@family
def test_seed_reaches_the_row_and_column_sampling(cls, fitted, frame):
    other = make(cls, seed=8)
    other.fit(frame, HORIZON)
    assert other.card.seed == 8
    mine = fitted[cls.family].predict(frame)["score"].to_numpy()
    theirs = other.predict(frame)["score"].to_numpy()
    assert not np.array_equal(mine, theirs)


@family
def test_rows_with_nan_features_get_null_position_others_unchanged(cls, fitted, frame):
    model = fitted[cls.family]
    holed = frame.copy()
    holed.loc[[0, 1, 2, 50], "f_ret_2"] = np.nan
    holed.loc[60, "f_vol_24"] = np.inf
    pred = model.predict(holed)
    full = model.predict(frame)
    missing = pred.index.isin([0, 1, 2, 50, 60])
    assert pred.loc[missing, ["score", "position"]].isna().all().all()
    assert pred.loc[~missing, "position"].notna().all()
    np.testing.assert_array_equal(pred.loc[~missing, "score"], full.loc[~missing, "score"])


@family
def test_predict_ignores_extra_columns_and_uses_card_order(cls, fitted, frame):
    model = fitted[cls.family]
    shuffled = frame[list(reversed(frame.columns))].assign(f_extra=1.0)
    pd.testing.assert_frame_equal(model.predict(shuffled), model.predict(frame))


# -- the card ---------------------------------------------------------------------------


@family
def test_card_records_lineage(cls, fitted, frame):
    card = fitted[cls.family].card
    used = frame.dropna(subset=[LABEL_SIGN])
    used = used[used[LABEL_SIGN] != 0]
    assert card.family == cls.family
    assert card.params["n_estimators"] == 30
    assert card.seed == 7
    assert card.horizon == HORIZON
    assert card.feature_columns == feature_columns(frame)
    assert card.rows == len(used)
    assert card.train_start == used["open_time"].iloc[0].isoformat()
    assert card.train_end == used["open_time"].iloc[-1].isoformat()
    assert card.library_versions[cls.library]
    assert {"numpy", "pandas"} <= set(card.library_versions)
    assert fitted[cls.family].train_seconds > 0
    assert "train_seconds" not in card.to_json()  # a timing in the bytes changes the version
    assert card.rows_unlabeled == HORIZON  # the tail whose forward return is unknown
    assert len(card.data_hash) == 64
    # per-round training logloss, falling as the trees fit the training set
    assert len(card.loss_curve) == 30
    assert card.loss_curve[-1] < card.loss_curve[0] < np.log(2) + 0.01
    # gain shares: 7 features (<= 10) so every splitting feature is kept and they sum to 1
    assert card.top_features
    assert set(card.top_features) <= set(card.feature_columns)
    assert sum(card.top_features.values()) == pytest.approx(1.0)
    assert all(0 < v <= 1 for v in card.top_features.values())
    assert ModelCard.from_json(card.to_json()) == card


@family
def test_top_features_keep_ten_largest_shares_of_all_gain(cls):
    wide = simple_feature_frame(400, seed=5, horizon=HORIZON)
    rng = np.random.default_rng(0)
    for i in range(15):
        wide[f"f_noise_{i:02d}"] = rng.normal(size=len(wide))
    card = make(cls).fit(wide, HORIZON)
    assert len(card.top_features) == 10
    assert 0 < sum(card.top_features.values()) < 1.0
    shares = list(card.top_features.values())
    assert shares == sorted(shares, reverse=True)


@family
def test_data_hash_follows_features_and_labels(cls, fitted, frame):
    base = fitted[cls.family].card.data_hash
    feature_changed = frame.copy()
    feature_changed.loc[100, "f_range"] += 1e-6
    label_changed = frame.copy()
    label_changed.loc[100, LABEL_RETURN] *= 1.5
    hashes = {
        make(cls, seed=7).fit(feature_changed, HORIZON).data_hash,
        make(cls, seed=7).fit(label_changed, HORIZON).data_hash,
        base,
    }
    assert len(hashes) == 3


@family
def test_zero_sign_rows_are_left_out_of_training(cls, frame):
    flat = frame.copy()
    flat.loc[10:29, LABEL_RETURN] = 0.0
    flat.loc[10:29, LABEL_SIGN] = 0.0
    card = make(cls).fit(flat, HORIZON)
    known = frame[LABEL_SIGN].notna() & (frame[LABEL_SIGN] != 0)
    assert card.rows == int(known.sum()) - 20


# -- errors -----------------------------------------------------------------------------


@family
def test_too_few_rows_says_how_many_and_how_many_needed(cls):
    small = simple_feature_frame(120, seed=1, horizon=HORIZON)  # 90 rows, 86 labelled
    usable = int((small[LABEL_SIGN].notna() & (small[LABEL_SIGN] != 0)).sum())
    assert usable < MIN_TRAIN_ROWS
    with pytest.raises(ModelError, match=rf"{usable} usable .*at least {MIN_TRAIN_ROWS}"):
        make(cls).fit(small, HORIZON)


@family
def test_constant_features_are_refused(cls, frame):
    flat = frame.copy()
    for col in feature_columns(flat):
        flat[col] = 1.0
    with pytest.raises(ModelError, match="constant"):
        make(cls).fit(flat, HORIZON)


@family
def test_nan_features_are_refused_in_training(cls, frame):
    holed = frame.copy()
    holed.loc[200, "f_mom_12"] = np.nan
    with pytest.raises(ModelError, match=r"NaN in features.*f_mom_12"):
        make(cls).fit(holed, HORIZON)


@family
def test_infinite_features_are_refused_in_training(cls, frame):
    holed = frame.copy()
    holed.loc[200, "f_range"] = np.inf
    with pytest.raises(ModelError, match=r"infinite.*f_range"):
        make(cls).fit(holed, HORIZON)


@family
def test_single_class_labels_are_refused(cls, frame):
    up_only = frame.copy()
    up_only[LABEL_RETURN] = up_only[LABEL_RETURN].abs() + 1e-4
    up_only[LABEL_SIGN] = np.sign(up_only[LABEL_RETURN])
    with pytest.raises(ModelError, match=r"single class.*all up"):
        make(cls).fit(up_only, HORIZON)


@family
def test_missing_column_at_predict_is_named(cls, fitted, frame):
    with pytest.raises(ModelError, match="f_vol_24"):
        fitted[cls.family].predict(frame.drop(columns=["f_vol_24"]))


@family
def test_unfitted_model_cannot_predict_or_serialise(cls, frame):
    model = make(cls)
    with pytest.raises(ModelError, match="unfitted"):
        model.predict(frame)
    with pytest.raises(ModelError, match="unfitted"):
        model.to_bytes()


@family
def test_seed_inside_params_and_bad_rounds_are_refused(cls):
    with pytest.raises(ModelError, match="seed="):
        cls({"seed": 3})
    with pytest.raises(ModelError, match="n_estimators"):
        cls({"n_estimators": 0})


@family
def test_defaults_match_the_documented_configuration(cls):
    params = cls().params
    assert params["n_estimators"] == 500
    assert params["max_depth"] == 7
    if cls is XGBoostModel:
        assert params["eta"] == 0.05
        assert params["subsample"] == params["colsample_bytree"] == 0.8
        assert params["objective"] == "binary:logistic"
        assert params["nthread"] == 1
    else:
        assert params["learning_rate"] == 0.05
        assert params["bagging_fraction"] == params["feature_fraction"] == 0.8
        assert params["deterministic"] is True
        assert params["num_threads"] == 1


# -- it learns what is learnable, and nothing else -------------------------------------------


@family
def test_learns_a_deterministic_signal_out_of_sample(cls):
    data = signal_frame(1500, seed=11)
    cut = int(len(data) * 0.6)
    train, test = data.iloc[:cut], data.iloc[cut:]
    model = make(cls, seed=0)
    model.fit(train, HORIZON)
    assert accuracy(model, test) > 0.9
    assert next(iter(sorted(model.card.top_features.items(), key=lambda kv: -kv[1])))[0] == (
        "f_ret_1"
    )


@family
def test_shuffled_labels_give_coin_toss_accuracy(cls):
    """Trained on permuted labels a model has no skill on the true ones. One shuffle's test
    accuracy spreads with sd ~0.055 (the noise the trees fit may happen to lean on
    ``f_ret_1``), so the mean over eight shuffles (sd ~0.02) is held to (0.4, 0.6)."""
    data = signal_frame(1500, seed=11)
    cut = int(len(data) * 0.6)
    test = data.iloc[cut:]
    accuracies = []
    for shuffle in range(8):
        train = data.iloc[:cut].copy()
        order = np.random.default_rng(shuffle).permutation(len(train))
        for col in (LABEL_RETURN, LABEL_SIGN):
            train[col] = train[col].to_numpy()[order]
        model = make(cls, seed=shuffle)
        model.fit(train, HORIZON)
        accuracies.append(accuracy(model, test))
    assert 0.4 < float(np.mean(accuracies)) < 0.6
    assert max(accuracies) < 0.75  # no single shuffle finds the signal either
