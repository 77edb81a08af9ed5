"""A PPO trading agent (RLlib, new API stack) on :class:`~clm_assets.models.trading_env.TradingEnv`.

Contract:

* ``fit`` trains a real PPO agent: it starts its own local Ray session (``num_cpus`` <= 2, no
  dashboard, a private temp dir under ``/tmp`` that is removed afterwards), builds PPO with
  0 env runners (sampling and learning run in this process), trains ``iterations``
  iterations of ``train_batch_size`` env steps, saves a checkpoint and packs it into bytes.
  Ray is always shut down (``algo.stop(); ray.shutdown()`` in ``finally``) and the Ray
  processes this fit started are checked to be gone. If Ray is already running in this
  process, ``fit`` refuses (``ModelError``) rather than share or kill someone else's session.
  The exception is a Ray task (a fit sent to a cluster, :mod:`clm_assets.models.cluster`):
  there Ray is up in worker mode, and ``fit`` trains on that worker as it would locally,
  starting and shutting down nothing (:func:`~clm_assets.models.ray_session.fit_session`).
* Training rows are those :func:`training_matrix` keeps (label known, no NaN feature); labels
  themselves are not used: the reward comes from ``close`` (see ``trading_env``). Rows are
  ordered by ``open_time`` (per ``symbol`` when present); a symbol change or a gap in the bar
  spacing starts a new segment and no episode crosses one. Feature mean/std come from these
  rows only and are stored on the card (``params["feature_mean"]`` / ``["feature_std"]``).
* ``card.loss_curve`` is RLlib's ``env_runners/episode_return_mean`` after each iteration (a
  running mean over the last ``metrics_num_episodes_for_smoothing`` = 100 episodes, in return
  units, higher is better); ``params["train_total_loss"]`` is the learner's PPO total loss per
  iteration. ``train_batch_size >= window`` is enforced so every iteration ends an episode.
  ``train_seconds`` (on the model, not in the bytes) is the whole Ray part of ``fit``
  (RLlib import on first use, Ray start, build, training, checkpoint, shutdown). ``fit``
  sets ``RAY_USAGE_STATS_ENABLED=0`` when it is unset.
* ``predict`` restores the RLModule from the bytes WITHOUT Ray and acts greedily (argmax of
  the action logits). The observation carries the position held, so positions are rolled
  forward bar by bar per series (flat at the first bar); because that position is one of
  three values, the policy is evaluated for all three in ONE batched forward pass and the
  roll is plain indexing. ``score = P(long) - P(short)`` of the policy at the rolled
  position. A row with a NaN/inf feature gets null ``score`` and ``position`` and the
  position after it is flat.
* ``payload`` is a reproducible tar.gz (:mod:`clm_assets.models.tarball`) of the RLModule
  part of the checkpoint (``learner_group/learner/rl_module``: weights and spaces), all that
  inference needs. The rest of an algorithm checkpoint is not kept: besides optimizer and
  env-runner state (and the env config, i.e. the training matrix, pickled four times) it
  holds RLlib's metrics with their wall-clock timers, so its bytes, and with them the
  version, would differ on every fit of the same data and seed.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from clm_assets.features.schema import PRICE_COLUMN
from clm_assets.models.base import (
    ModelCard,
    ModelError,
    TradingModel,
    data_hash,
    library_versions,
    training_matrix,
)
from clm_assets.models.ray_session import fit_session
from clm_assets.models.rl_checkpoint import pack_checkpoint, restore_module
from clm_assets.models.trading_env import (
    ACTION_POSITIONS,
    TradingEnv,
    make_env_config,
    standardization_stats,
    standardize,
)


class PPOModel(TradingModel):
    """Proximal Policy Optimization agent trading short / flat / long."""

    family: ClassVar[str] = "ppo"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            # 8 iterations x 2000 env steps, 5 epochs of 256-step minibatches: ~4 s of CPU
            # per iteration, ~45-50 s per fit on 90 days of hourly bars on 2 idle cores
            # (of which ~15 s are importing RLlib, starting Ray and building PPO).
            "iterations": 8,
            "train_batch_size": 2000,
            "minibatch_size": 256,
            "num_epochs": 5,
            "lr": 3e-4,
            "gamma": 0.95,
            "lambda_": 0.95,
            "clip_param": 0.2,
            "entropy_coeff": 0.01,
            "hidden": [64, 64],
            "window": 256,
            "fee": 0.001,
            "clip": 10.0,
            "num_cpus": 2,
        }

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(params, seed)
        self.seed = int(seed)
        p = self.params
        for key in ("iterations", "train_batch_size", "minibatch_size", "num_epochs", "window"):
            value = p[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelError(f"ppo: {key} must be an int >= 1, got {value!r}")
        if p["train_batch_size"] < p["window"]:
            raise ModelError(
                f"ppo: train_batch_size ({p['train_batch_size']}) must be >= window "
                f"({p['window']}) so every iteration completes an episode"
            )
        if p["minibatch_size"] > p["train_batch_size"]:
            raise ModelError("ppo: minibatch_size must be <= train_batch_size")
        if not (isinstance(p["fee"], int | float) and p["fee"] >= 0):
            raise ModelError(f"ppo: fee must be a number >= 0, got {p['fee']!r}")
        if not isinstance(p["num_cpus"], int) or not 1 <= p["num_cpus"] <= 2:
            raise ModelError(f"ppo: num_cpus must be 1 or 2, got {p['num_cpus']!r}")
        self.params["hidden"] = [int(h) for h in p["hidden"]]
        self._blob: bytes | None = None
        self._module: Any = None
        self.ray_temp_dir: str | None = None
        """The private Ray temp dir of the last ``fit`` (already removed when it returns)."""

    # -- training --------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, horizon: int) -> ModelCard:
        if not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ModelError(f"ppo: horizon must be an int >= 1, got {horizon!r}")
        for column in ("open_time", PRICE_COLUMN):
            if column not in frame.columns:
                raise ModelError(f"ppo: training frame has no {column!r} column")
        usable, features, unlabeled = training_matrix(frame)
        usable = _ordered(usable)
        x = _float_matrix(usable, features)
        if not np.isfinite(x).all():
            raise ModelError("ppo: infinite values in training features")
        close = usable[PRICE_COLUMN].to_numpy(dtype="float64")
        if not (np.isfinite(close).all() and (close > 0).all()):
            raise ModelError("ppo: 'close' must be finite and positive on training rows")
        segments = _segments(usable)
        window = self.params["window"]
        longest = int(np.bincount(segments).max()) if len(segments) else 0
        if longest < window + 1:
            raise ModelError(
                f"ppo: {len(usable)} usable rows (longest gap-free series {longest}); an "
                f"episode window of {window} steps needs at least {window + 1}"
            )
        mean, std = standardization_stats(x)
        env_config = make_env_config(
            x,
            close,
            segments=segments,
            mean=mean,
            std=std,
            window=window,
            fee=float(self.params["fee"]),
            clip=float(self.params["clip"]),
        )
        try:
            TradingEnv(env_config)  # fail here, not inside RLlib, on a bad config
        except ValueError as exc:
            raise ModelError(f"ppo: cannot build the trading env: {exc}") from exc

        started = time.perf_counter()
        blob, returns, losses = self._train(env_config)
        self.train_seconds = time.perf_counter() - started
        self._blob = blob
        self._module = None

        open_time = pd.to_datetime(usable["open_time"])
        self.card = ModelCard(
            family=self.family,
            params={
                **self.params,
                "feature_mean": [float(v) for v in mean],
                "feature_std": [float(v) for v in std],
                "train_total_loss": losses,
                "observation": "standardized features (card order, clipped) + position",
                "actions": {"0": -1, "1": 0, "2": 1},
            },
            seed=self.seed,
            horizon=int(horizon),
            feature_columns=list(features),
            train_start=open_time.min().isoformat(),
            train_end=open_time.max().isoformat(),
            rows=len(usable),
            rows_unlabeled=unlabeled,
            data_hash=data_hash(usable, [*features, PRICE_COLUMN]),
            library_versions=library_versions("ray", "torch", "gymnasium"),
            loss_curve=returns,
        )
        return self.card

    def _train(self, env_config: dict[str, Any]) -> tuple[bytes, list[float], list[float]]:
        """Run PPO in a private Ray session (or, inside a cluster task, on the worker's own
        connection); return packed checkpoint, returns, losses."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            from ray.rllib.algorithms.ppo import PPOConfig
        except ImportError as exc:  # pragma: no cover - ray is a hard dependency
            raise ModelError(f"ppo: ray[rllib] is not importable: {exc}") from exc
        p = self.params
        session = fit_session()
        self.ray_temp_dir = session.temp_dir
        algo = None
        returns: list[float] = []
        losses: list[float] = []
        try:
            session.start(num_cpus=int(p["num_cpus"]))
            config = (
                PPOConfig()
                .api_stack(
                    enable_rl_module_and_learner=True,
                    enable_env_runner_and_connector_v2=True,
                )
                .framework("torch")
                .environment(TradingEnv, env_config=env_config)
                .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
                .learners(num_learners=0, num_gpus_per_learner=0)
                .training(
                    train_batch_size_per_learner=int(p["train_batch_size"]),
                    minibatch_size=int(p["minibatch_size"]),
                    num_epochs=int(p["num_epochs"]),
                    lr=float(p["lr"]),
                    gamma=float(p["gamma"]),
                    lambda_=float(p["lambda_"]),
                    clip_param=float(p["clip_param"]),
                    entropy_coeff=float(p["entropy_coeff"]),
                )
                .rl_module(model_config={"fcnet_hiddens": list(p["hidden"])})
                .debugging(seed=self.seed, log_level="ERROR")
            )
            with warnings.catch_warnings():
                # RLlib re-registers its gymnasium wrapper id on every build.
                warnings.filterwarnings("ignore", message=".*already in registry")
                algo = config.build_algo()
            for i in range(int(p["iterations"])):
                result = algo.train()
                ret = result.get("env_runners", {}).get("episode_return_mean")
                loss = result.get("learners", {}).get("default_policy", {}).get("total_loss")
                if ret is None or loss is None:
                    raise ModelError(
                        f"ppo: iteration {i + 1} reported no episode return / total loss"
                    )
                ret, loss = float(ret), float(loss)
                if not (math.isfinite(ret) and math.isfinite(loss)):
                    raise ModelError(
                        f"ppo: iteration {i + 1} diverged (episode return {ret}, loss {loss})"
                    )
                returns.append(ret)
                losses.append(loss)
            checkpoint = Path(session.temp_dir) / "checkpoint"
            algo.save_to_path(str(checkpoint))
            blob = pack_checkpoint(checkpoint)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"ppo: training failed: {_describe(exc)}") from exc
        finally:
            session.close(stop_first=None if algo is None else algo.stop)
        return blob, returns, losses

    # -- inference -------------------------------------------------------------------

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.card is None or self._blob is None:
            raise ModelError("ppo: predict called on an unfitted model")
        needed = ["open_time", *self.card.feature_columns]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ModelError(f"ppo: frame lacks columns the model was trained on: {missing}")
        n = len(frame)
        score = np.full(n, np.nan)
        position = np.full(n, np.nan)
        if n:
            x = _float_matrix(frame, self.card.feature_columns)
            complete = np.isfinite(x).all(axis=1)
            mean = np.asarray(self.card.params["feature_mean"], dtype="float64")
            std = np.asarray(self.card.params["feature_std"], dtype="float64")
            z = standardize(np.where(complete[:, None], x, 0.0), mean, std, self.params["clip"])
            logits = self._logits_all_positions(z)  # (3 positions held, n rows, 3 actions)
            shifted = logits - logits.max(axis=2, keepdims=True)
            probs = np.exp(shifted)
            probs /= probs.sum(axis=2, keepdims=True)
            greedy = logits.argmax(axis=2)
            for rows in _series_rows(frame):
                _roll(rows, greedy, probs, complete, score, position)
        return pd.DataFrame(
            {"open_time": frame["open_time"].array, "score": score, "position": position},
            index=frame.index,
        )

    def _logits_all_positions(self, z: np.ndarray) -> np.ndarray:
        import torch
        from ray.rllib.core.columns import Columns

        module = self._load_module()
        n, k = z.shape
        obs = np.empty((3, n, k + 1), dtype=np.float32)
        obs[:, :, :k] = z
        obs[:, :, k] = ACTION_POSITIONS.astype(np.float32)[:, None]
        threads = torch.get_num_threads()
        try:
            # One thread: a (3n x features) MLP pass is tiny, and on shared cores torch's
            # thread pool made it 3-7x slower (0.1-0.25 s vs 0.035 s for 2k rows).
            torch.set_num_threads(1)
            with torch.no_grad():
                out = module.forward_inference(
                    {Columns.OBS: torch.from_numpy(obs.reshape(-1, k + 1))}
                )
            logits = out[Columns.ACTION_DIST_INPUTS].detach().cpu().numpy().astype("float64")
        except Exception as exc:
            raise ModelError(f"ppo: policy forward pass failed: {exc}") from exc
        finally:
            torch.set_num_threads(threads)
        if logits.shape != (3 * n, 3) or not np.isfinite(logits).all():
            raise ModelError(f"ppo: policy returned bad logits of shape {logits.shape}")
        return logits.reshape(3, n, 3)

    def _load_module(self) -> Any:
        if self._module is not None:
            return self._module
        if self._blob is None:
            raise ModelError("ppo: no checkpoint bytes to load")
        self._module = restore_module(self._blob)
        return self._module

    # -- bytes -----------------------------------------------------------------------

    def _payload(self) -> bytes:
        if self._blob is None:
            raise ModelError("ppo: no fitted checkpoint to serialise")
        return self._blob

    @classmethod
    def _from_payload(cls, payload: bytes, card: ModelCard) -> PPOModel:
        defaults = cls.default_params()
        model = cls(params={k: v for k, v in card.params.items() if k in defaults}, seed=card.seed)
        for key in ("feature_mean", "feature_std"):
            if len(card.params.get(key, [])) != len(card.feature_columns):
                raise ModelError(f"ppo: card has no usable {key}")
        model._blob = bytes(payload)
        return model


# -- helpers ---------------------------------------------------------------------------


def _float_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    try:
        return frame[columns].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"ppo: features are not numeric: {exc}") from exc


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["symbol", "open_time"] if "symbol" in frame.columns else ["open_time"]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _segments(frame: pd.DataFrame) -> np.ndarray:
    """Segment id per row of a time-ordered frame: new at a symbol change or a time gap."""
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    times = pd.DatetimeIndex(pd.to_datetime(frame["open_time"], utc=True)).as_unit("ns").asi8
    step = np.diff(times)
    new = np.zeros(n, dtype=bool)
    if "symbol" in frame.columns:
        sym = frame["symbol"].astype(str).to_numpy()
        new[1:] |= sym[1:] != sym[:-1]
    if n > 1:
        positive = step[step > 0]
        bar = np.median(positive) if len(positive) else 0
        new[1:] |= (step <= 0) | (step > 1.5 * bar)
    return np.cumsum(new).astype(np.int64)


def _series_rows(frame: pd.DataFrame) -> list[np.ndarray]:
    """Positional row indices of each series (symbol), in open_time order."""
    times = pd.to_datetime(frame["open_time"]).reset_index(drop=True)
    if "symbol" in frame.columns:
        keys = pd.DataFrame({"s": frame["symbol"].astype(str).to_numpy(), "t": times})
        order = keys.sort_values(["s", "t"], kind="stable").index.to_numpy()
        sym = keys["s"].to_numpy()[order]
        cuts = np.flatnonzero(sym[1:] != sym[:-1]) + 1
        return np.split(order, cuts)
    return [times.sort_values(kind="stable").index.to_numpy()]


def _roll(
    rows: np.ndarray,
    greedy: np.ndarray,
    probs: np.ndarray,
    complete: np.ndarray,
    score: np.ndarray,
    position: np.ndarray,
) -> None:
    """Greedy roll-forward of one series: the position chosen at a bar is the observed
    position at the next bar. ``greedy`` (3, n) and ``probs`` (3, n, 3) are indexed by the
    position held (0 short, 1 flat, 2 long). Writes ``score`` / ``position`` in place."""
    held = 1  # index into ACTION_POSITIONS: flat
    ok = complete.tolist()
    for r in rows.tolist():
        if not ok[r]:
            held = 1
            continue
        action = int(greedy[held, r])
        p = probs[held, r]
        score[r] = p[2] - p[0]
        position[r] = ACTION_POSITIONS[action]
        held = action


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception and its causes (RLlib re-raises env errors as a
    bare ``RuntimeError()`` chained to the original)."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 5:
        seen.add(id(current))
        text = str(current).strip().splitlines()[0] if str(current).strip() else ""
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)
