"""A gymnasium trading environment over a features frame, for the RL model family.

One step is one bar. The observation at bar ``t`` is the standardized ``f_`` feature vector
of that bar followed by the position currently held (-1, 0 or +1, the one chosen at bar
``t - 1``). Actions are ``Discrete(3)``: 0 = short, 1 = flat, 2 = long, i.e. the target
position is ``action - 1``. The reward of choosing position ``p`` at bar ``t`` is

    p * (close[t + 1] / close[t] - 1) - fee * |p - previous position|

so the agent pays ``fee`` per unit of position traded and earns the next bar's simple
return. An episode is a window of ``window`` consecutive steps starting at a random bar
(drawn from the env's seeded ``np_random``) and terminates at the end of the window; a
window never crosses a segment boundary (segments are e.g. separate symbols).

Features are standardized with a mean/std computed on the TRAINING data only
(:func:`standardization_stats`), which the model stores and re-uses at inference; the env
receives those stats (or computes them from its own data when it *is* the training data).

Everything the env needs travels in a plain ``env_config`` dict of numpy arrays and numbers
(:func:`make_env_config`), which is what RLlib hands to every env runner, so a runner in
another process can rebuild the env from it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ACTION_POSITIONS = np.array([-1.0, 0.0, 1.0])
"""Target position of each discrete action: 0 = short, 1 = flat, 2 = long."""
DEFAULT_FEE = 0.001
"""10 bps of notional per unit of position change."""
DEFAULT_WINDOW = 256
DEFAULT_CLIP = 10.0
"""Standardized features are clipped to [-clip, clip] so one outlier bar cannot blow up the
policy's input."""


def standardization_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std (population) of training features; a zero std becomes 1."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features must be a non-empty 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean, std


def standardize(
    features: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float = DEFAULT_CLIP
) -> np.ndarray:
    """``(x - mean) / std`` clipped to [-clip, clip], as float32 (NaN stays NaN)."""
    z = (np.asarray(features, dtype=np.float64) - mean) / std
    return np.clip(z, -clip, clip).astype(np.float32)


def make_env_config(
    features: np.ndarray,
    close: np.ndarray,
    *,
    segments: np.ndarray | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    window: int = DEFAULT_WINDOW,
    fee: float = DEFAULT_FEE,
    clip: float = DEFAULT_CLIP,
) -> dict[str, Any]:
    """The ``env_config`` dict of arrays RLlib passes to ``TradingEnv(env_config)``.

    ``segments`` (one integer id per row, rows of a segment contiguous and in time order)
    keeps episodes inside one series; by default the whole array is one series. Without
    ``mean``/``std`` the stats are computed from ``features`` (they are the training data).
    """
    features = np.asarray(features, dtype=np.float64)
    if mean is None or std is None:
        mean, std = standardization_stats(features)
    return {
        "features": features,
        "close": np.asarray(close, dtype=np.float64),
        "segments": (
            np.zeros(len(features), dtype=np.int64)
            if segments is None
            else np.asarray(segments, dtype=np.int64)
        ),
        "mean": np.asarray(mean, dtype=np.float64),
        "std": np.asarray(std, dtype=np.float64),
        "window": int(window),
        "fee": float(fee),
        "clip": float(clip),
    }


class TradingEnv(gym.Env):
    """Single-asset long/flat/short environment; see the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium convention)

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = dict(env_config or {})
        if "features" not in cfg or "close" not in cfg:
            raise ValueError("env_config needs 'features' (rows x features) and 'close'")
        features = np.asarray(cfg["features"], dtype=np.float64)
        close = np.asarray(cfg["close"], dtype=np.float64)
        if features.ndim != 2 or close.shape != (len(features),):
            raise ValueError(f"features {features.shape} and close {close.shape} do not line up")
        if not np.isfinite(close).all() or (close <= 0).any():
            raise ValueError("close must be finite and positive")
        n = len(features)
        segments = np.asarray(cfg.get("segments", np.zeros(n)), dtype=np.int64)
        if segments.shape != (n,):
            raise ValueError("segments must hold one id per row")
        if cfg.get("mean") is None or cfg.get("std") is None:
            self.mean, self.std = standardization_stats(features)
        else:
            self.mean = np.asarray(cfg["mean"], dtype=np.float64)
            self.std = np.asarray(cfg["std"], dtype=np.float64)
        self.fee = float(cfg.get("fee", DEFAULT_FEE))
        self.window = int(cfg.get("window", DEFAULT_WINDOW))
        self.clip = float(cfg.get("clip", DEFAULT_CLIP))
        if self.window < 1:
            raise ValueError("window must be >= 1 step")
        if self.fee < 0:
            raise ValueError("fee must be >= 0")

        self._obs = standardize(features, self.mean, self.std, self.clip)
        if not np.isfinite(self._obs).all():
            raise ValueError("features contain NaN or inf")
        # Next-bar simple return of each row; the last row of a segment has none.
        ret = np.full(n, np.nan)
        same = segments[1:] == segments[:-1]
        ret[:-1] = np.where(same, close[1:] / close[:-1] - 1.0, np.nan)
        self._next_return = ret
        # A start s is valid when s .. s + window - 1 all lie in one segment and each has
        # a next bar in that segment, i.e. rows s .. s + window are one segment.
        ok = np.isfinite(ret).astype(np.int64)
        csum = np.concatenate([[0], np.cumsum(ok)])
        starts = np.arange(max(n - self.window + 1, 0))
        full = csum[starts + self.window] - csum[starts] == self.window
        self._starts = starts[full]
        if len(self._starts) == 0:
            raise ValueError(
                f"no window of {self.window} steps fits in the data ({n} rows, each step "
                "needs a next bar in the same series)"
            )

        k = features.shape[1]
        high = np.full(k + 1, self.clip, dtype=np.float32)
        high[-1] = max(self.clip, 1.0)
        # Seeded, not for any draw (episode starts use the env's ``np_random``, actions the
        # policy): RLlib pickles copies of these spaces, generators included, into the
        # checkpoint, and an unseeded generator would put OS entropy into the model bytes.
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32, seed=0)
        self.action_space = gym.spaces.Discrete(3, seed=0)
        self._t = 0
        self._end = 0
        self._position = 0.0

    @property
    def n_starts(self) -> int:
        return len(self._starts)

    def _observation(self) -> np.ndarray:
        return np.append(self._obs[self._t], np.float32(self._position)).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start = (options or {}).get("start")
        if start is None:
            start = int(self._starts[self.np_random.integers(len(self._starts))])
        elif int(start) not in set(self._starts.tolist()):
            raise ValueError(f"start {start} is not a valid window start")
        self._t = int(start)
        self._end = self._t + self.window
        self._position = 0.0
        return self._observation(), {"t": self._t}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < 3:
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        position = float(ACTION_POSITIONS[a])
        ret = float(self._next_return[self._t])
        cost = self.fee * abs(position - self._position)
        reward = position * ret - cost
        self._position = position
        self._t += 1
        terminated = self._t >= self._end
        info = {"t": self._t, "position": position, "bar_return": ret, "cost": cost}
        return self._observation(), reward, terminated, False, info
