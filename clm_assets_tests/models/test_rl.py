"""TradingEnv unit tests and a real (tiny) PPO fit through RLlib.

The PPO fits are small but real: 1 iteration of 256 env steps on ~600 bars. Two fits with
the same seed run in this module (determinism across fits); both start and stop their own
local Ray session, so the module takes ~40-60 s on 2 busy cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from clm_assets.models.base import ModelError, training_matrix
from clm_assets.models.rl import PPOModel
from clm_assets.models.trading_env import (
    TradingEnv,
    make_env_config,
    standardization_stats,
    standardize,
)
from clm_assets_tests.factories import simple_feature_frame

TINY = {
    "iterations": 1,
    "train_batch_size": 256,
    "minibatch_size": 64,
    "num_epochs": 2,
    "window": 64,
}


def _ray_descendants() -> list[str]:
    """Ray processes (raylet, gcs_server, workers) below this test process, via /proc."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if stat[0] == "Z":
            continue
        parent[int(entry)] = int(stat[1])
        names[int(entry)] = cmd
    me = os.getpid()
    found = []
    for pid, cmd in names.items():
        p, hops = pid, 0
        while p in parent and p not in (0, 1) and hops < 64:
            p, hops = parent[p], hops + 1
            if p == me:
                if any(s in cmd for s in ("raylet", "gcs_server", "ray::", "ray/_private")):
                    found.append(f"{pid} {cmd[:80]}")
                break
    return found


def _assert_ray_gone(model: PPOModel) -> None:
    import ray

    assert not ray.is_initialized()
    assert _ray_descendants() == []
    assert model.ray_temp_dir is not None
    assert not Path(model.ray_temp_dir).exists()


# -- TradingEnv ------------------------------------------------------------------------


def _toy_env(fee: float = 0.001, window: int = 5) -> TradingEnv:
    close = np.array([100.0, 101.0, 99.0, 99.0, 102.0, 100.0, 100.5])
    features = np.column_stack([np.arange(7.0), np.array([1.0, 3, 2, 5, 4, 6, 0])])
    return TradingEnv(make_env_config(features, close, window=window, fee=fee))


def test_env_reward_matches_hand_computation_with_fees() -> None:
    env = _toy_env(fee=0.001, window=5)
    obs, _ = env.reset(seed=0, options={"start": 0})
    assert obs[-1] == 0.0  # starts flat
    actions = [2, 2, 0, 1, 0]  # long, long, short, flat, short
    positions = [1.0, 1.0, -1.0, 0.0, -1.0]
    expected = [
        1 * (101 / 100 - 1) - 0.001 * 1,  # flat -> long
        1 * (99 / 101 - 1) - 0.0,  # hold long
        -1 * (99 / 99 - 1) - 0.001 * 2,  # long -> short: two units traded
        0 * (102 / 99 - 1) - 0.001 * 1,  # short -> flat
        -1 * (100 / 102 - 1) - 0.001 * 1,  # flat -> short
    ]
    rewards, terminated = [], []
    for action, position in zip(actions, positions, strict=True):
        obs, reward, term, trunc, _ = env.step(action)
        assert obs[-1] == position  # the position held is part of the next observation
        assert trunc is False
        rewards.append(reward)
        terminated.append(term)
    np.testing.assert_allclose(rewards, expected, rtol=0, atol=1e-15)
    assert terminated == [False, False, False, False, True]
    assert sum(rewards) == pytest.approx(
        (101 / 100 - 1) + (99 / 101 - 1) - (100 / 102 - 1) - 0.001 * 5
    )


def test_env_zero_fee_config() -> None:
    env = _toy_env(fee=0.0, window=2)
    env.reset(seed=0, options={"start": 1})
    _, r1, _, _, _ = env.step(0)
    _, r2, term, _, _ = env.step(2)
    assert r1 == pytest.approx(-(99 / 101 - 1))
    assert r2 == pytest.approx(99 / 99 - 1)
    assert term


def test_env_observation_uses_training_stats() -> None:
    train = simple_feature_frame(300, seed=1)
    test = simple_feature_frame(300, seed=2)
    feats = [c for c in train.columns if c.startswith("f_")]
    x_train, x_test = train[feats].to_numpy(), test[feats].to_numpy()
    mean, std = standardization_stats(x_train)
    np.testing.assert_allclose(mean, x_train.mean(axis=0))
    np.testing.assert_allclose(std, x_train.std(axis=0))

    # Training env computes its stats from its own (training) rows.
    env = TradingEnv(make_env_config(x_train, train["close"].to_numpy(), window=16))
    np.testing.assert_allclose(env.mean, mean)
    obs, _ = env.reset(seed=0, options={"start": 10})
    np.testing.assert_allclose(obs[:-1], ((x_train[10] - mean) / std).astype(np.float32), rtol=1e-6)

    # An env over other data given the training stats uses those, not its own.
    env2 = TradingEnv(
        make_env_config(x_test, test["close"].to_numpy(), mean=mean, std=std, window=16)
    )
    np.testing.assert_allclose(env2.mean, mean)
    obs2, _ = env2.reset(seed=0, options={"start": 10})
    np.testing.assert_allclose(obs2[:-1], standardize(x_test[10:11], mean, std)[0])
    assert not np.allclose(env2.mean, x_test.mean(axis=0))


def test_env_constant_feature_and_clipping() -> None:
    x = np.column_stack([np.ones(50), np.linspace(-1, 1, 50)])
    mean, std = standardization_stats(x)
    assert std[0] == 1.0  # constant column: no division by zero
    z = standardize(np.array([[1.0, 1e6], [5.0, -1e6]]), mean, std, clip=10.0)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, [[0.0, 10.0], [4.0, -10.0]])


def test_env_episode_terminates_at_window_end_and_is_seeded() -> None:
    frame = simple_feature_frame(200, seed=0)
    feats = [c for c in frame.columns if c.startswith("f_")]
    cfg = make_env_config(frame[feats].to_numpy(), frame["close"].to_numpy(), window=25)
    env = TradingEnv(cfg)
    check_env(env, skip_render_check=True)
    starts = []
    for seed in (0, 0, 1):
        _, info = env.reset(seed=seed)
        starts.append(info["t"])
        steps, term = 0, False
        while not term:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            assert not trunc
            steps += 1
        assert steps == 25
    assert starts[0] == starts[1]  # same seed, same window
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 3
    assert env.observation_space.shape == (len(feats) + 1,)


def test_env_windows_stay_inside_one_segment() -> None:
    close = np.linspace(100, 120, 20)
    features = np.arange(20.0)[:, None]
    segments = np.r_[np.zeros(10), np.ones(10)]
    env = TradingEnv(make_env_config(features, close, segments=segments, window=5))
    # rows s..s+5 must share a segment: starts 0-4 and 10-14
    assert env.n_starts == 10
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert info["t"] in {*range(5), *range(10, 15)}
    with pytest.raises(ValueError, match="no window"):
        TradingEnv(make_env_config(features, close, segments=segments, window=10))


def test_env_built_from_plain_env_config_dict() -> None:
    """What an RLlib env runner receives: a dict of arrays (picklable)."""
    import pickle

    frame = simple_feature_frame(120, seed=0)
    feats = [c for c in frame.columns if c.startswith("f_")]
    cfg = pickle.loads(
        pickle.dumps(make_env_config(frame[feats].to_numpy(), frame["close"].to_numpy(), window=8))
    )
    env = TradingEnv(cfg)
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    with pytest.raises(ValueError):
        TradingEnv({"close": np.ones(5)})


# -- PPOModel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simple_feature_frame(630, seed=3, horizon=4)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> PPOModel:
    model = PPOModel(TINY, seed=7)
    model.fit(frame, horizon=4)
    return model


def test_fit_leaves_no_ray_behind(fitted: PPOModel) -> None:
    _assert_ray_gone(fitted)


def test_card_records_training(fitted: PPOModel, frame: pd.DataFrame) -> None:
    card = fitted.card
    assert card is not None
    usable, feats, unlabeled = training_matrix(frame)
    assert card.family == "ppo"
    assert card.seed == 7 and card.horizon == 4
    assert card.feature_columns == feats
    assert card.rows == len(usable)
    assert card.train_start == usable["open_time"].min().isoformat()
    assert card.train_end == usable["open_time"].max().isoformat()
    assert len(card.data_hash) == 64
    assert {"ray", "torch", "gymnasium", "numpy", "pandas"} <= set(card.library_versions)
    assert len(card.loss_curve) == TINY["iterations"]
    assert all(np.isfinite(card.loss_curve))
    assert len(card.params["train_total_loss"]) == TINY["iterations"]
    assert fitted.train_seconds is not None and fitted.train_seconds > 0
    assert card.rows_unlabeled == unlabeled == 4  # the label horizon's unknown tail
    # standardization stats are the training rows' own
    x = usable[feats].to_numpy()
    np.testing.assert_allclose(card.params["feature_mean"], x.mean(axis=0))
    np.testing.assert_allclose(card.params["feature_std"], x.std(axis=0))
    assert json.loads(card.to_json())["params"]["window"] == TINY["window"]


def test_predict_positions_and_bytes_round_trip(fitted: PPOModel, frame: pd.DataFrame) -> None:
    pred = fitted.predict(frame)
    assert list(pred.columns) == ["open_time", "score", "position"]
    assert pred.index.equals(frame.index)
    assert set(pred["position"].unique()) <= {-1.0, 0.0, 1.0}
    assert pred["score"].between(-1, 1).all()
    assert fitted.predict(frame.iloc[:0]).empty

    blob = fitted.to_bytes()
    restored = PPOModel.from_bytes(blob)
    assert restored.card == fitted.card
    pd.testing.assert_frame_equal(restored.predict(frame), pred)
    pd.testing.assert_frame_equal(restored.predict(frame), pred)  # cached module, same
    assert fitted.to_bytes() == blob


def test_predict_matches_sequential_rollout(fitted: PPOModel, frame: pd.DataFrame) -> None:
    """The 3-branch batched roll equals a plain bar-by-bar loop through the RLModule."""
    import torch
    from ray.rllib.core.columns import Columns

    card = fitted.card
    assert card is not None
    part = frame.iloc[:60]
    pred = fitted.predict(part)
    module = fitted._load_module()
    z = standardize(
        part[card.feature_columns].to_numpy(),
        np.asarray(card.params["feature_mean"]),
        np.asarray(card.params["feature_std"]),
    )
    held = 0.0
    for i in range(len(part)):
        obs = torch.from_numpy(np.append(z[i], np.float32(held))[None, :].astype(np.float32))
        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS][0]
        probs = torch.softmax(logits.double(), dim=0).numpy()
        held = float(int(logits.argmax()) - 1)
        assert pred["position"].iloc[i] == held
        assert pred["score"].iloc[i] == pytest.approx(probs[2] - probs[0], abs=1e-6)


def test_predict_nan_rows_get_null_position(fitted: PPOModel, frame: pd.DataFrame) -> None:
    bad = frame.copy()
    bad.loc[[5, 6], "f_ret_1"] = np.nan
    pred = fitted.predict(bad)
    assert pred.loc[[5, 6], ["score", "position"]].isna().all().all()
    assert pred.drop(index=[5, 6])["position"].notna().all()
    # rows before the gap are unaffected by it
    pd.testing.assert_frame_equal(pred.iloc[:5], fitted.predict(frame).iloc[:5])


def test_predict_rolls_each_symbol_separately(fitted: PPOModel, frame: pd.DataFrame) -> None:
    a = frame.iloc[:100]
    b = frame.iloc[100:200].assign(symbol="ETH-USD")
    both = pd.concat([b, a], ignore_index=True)  # order of rows in the frame is kept
    pred = fitted.predict(both)
    alone_a = fitted.predict(a.reset_index(drop=True))
    pd.testing.assert_frame_equal(pred.iloc[100:].reset_index(drop=True), alone_a)


def test_predict_needs_trained_columns(fitted: PPOModel, frame: pd.DataFrame) -> None:
    with pytest.raises(ModelError, match="f_hour"):
        fitted.predict(frame.drop(columns=["f_hour"]))


def test_same_seed_same_predictions(fitted: PPOModel, frame: pd.DataFrame) -> None:
    """A second fit with the same seed learns the same policy, byte for byte."""
    again = PPOModel(TINY, seed=7)
    again.fit(frame, horizon=4)
    _assert_ray_gone(again)
    assert again.card is not None and fitted.card is not None
    assert again.card.loss_curve == fitted.card.loss_curve
    assert again.card.params["train_total_loss"] == fitted.card.params["train_total_loss"]
    assert again.to_bytes() == fitted.to_bytes()
    expected = fitted.predict(frame)
    pd.testing.assert_frame_equal(again.predict(frame), expected)
    restored = PPOModel.from_bytes(again.to_bytes())
    pd.testing.assert_frame_equal(restored.predict(frame), expected)


# -- failures ----------------------------------------------------------------------------


def test_unfitted_model_refuses() -> None:
    model = PPOModel(TINY)
    with pytest.raises(ModelError):
        model.to_bytes()
    with pytest.raises(ModelError):
        model.predict(simple_feature_frame(50))


def test_bad_params_refused() -> None:
    with pytest.raises(ModelError, match="unknown"):
        PPOModel({"n_estimators": 3})
    with pytest.raises(ModelError, match="window"):
        PPOModel({"train_batch_size": 100, "window": 200})


def test_refuses_to_share_a_running_ray(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit owns its Ray session: with Ray already up it raises and shuts nothing down."""
    import ray

    shutdowns: list[bool] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: shutdowns.append(True))
    model = PPOModel(TINY)
    with pytest.raises(ModelError, match="already initialized"):
        model.fit(frame, horizon=4)
    assert shutdowns == [] and model.ray_temp_dir is None


def test_nan_features_raise_before_ray(frame: pd.DataFrame) -> None:
    import ray

    bad = frame.copy()
    bad.loc[10, "f_mom_12"] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        PPOModel(TINY).fit(bad, horizon=4)
    assert not ray.is_initialized()


def test_too_few_rows_raise(frame: pd.DataFrame) -> None:
    import ray

    with pytest.raises(ModelError, match="window"):
        PPOModel(TINY).fit(frame.iloc[:40], horizon=4)
    assert not ray.is_initialized()


def test_failure_inside_training_shuts_ray_down(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised by the env while RLlib samples surfaces as ModelError, and Ray
    is stopped, its processes gone and the temp dir removed."""

    def broken_step(self, action):
        raise RuntimeError("env exploded")

    monkeypatch.setattr(TradingEnv, "step", broken_step)
    model = PPOModel(TINY, seed=1)
    with pytest.raises(ModelError, match="env exploded"):
        model.fit(frame, horizon=4)
    _assert_ray_gone(model)
    assert model.card is None
