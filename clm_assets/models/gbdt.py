"""Gradient-boosted tree classifiers (XGBoost, LightGBM) on the direction of the label.

Both families learn ``P(up)`` for a bar, where "up" means ``label_sign > 0``, and trade
``position = 2 * P(up) - 1`` (in [-1, 1]: fully long at certainty of up, flat at a coin toss).

Contract, shared by both families (:class:`GBDTModel`):

* Training rows are those :func:`training_matrix` keeps (label known, no NaN feature), and
  of those only rows with ``label_sign != 0``: a bar whose forward return is exactly zero has
  no direction, so it is neither "up" nor "down" evidence; counting it as "down" would bias
  the classifier toward shorting flat markets. The dropped rows are not hashed, not counted
  in ``card.rows`` and do not set ``train_start`` / ``train_end``; rows dropped for a null
  label are counted in ``card.rows_unlabeled``.
* Fitting needs at least :data:`MIN_TRAIN_ROWS` such rows, both classes present and finite
  features (NaN and constant features are refused by ``training_matrix``; +/-inf here).
  Anything else raises :class:`ModelError`; nothing is ever substituted.
* ``predict`` uses exactly ``card.feature_columns`` in card order (a missing one raises
  ``ModelError`` naming it; extra columns are ignored). A row with any NaN or infinite
  feature is not predicted: its ``score`` and ``position`` are null (NaN). The libraries
  could route NaN down a default branch, but the features asset only leaves NaN where the
  history is too short, and a guess from a partial row must not become a position.
* ``seed`` is the only source of randomness (row/column subsampling); the same data, params
  and seed give the same booster bytes. Pass it as ``seed=``, not inside ``params``.
* ``params`` holds the library's own parameter names plus ``n_estimators`` (boosting
  rounds), limited to the names in ``default_params`` (the libraries ignore a misspelled
  key, so it is refused); everything in it is recorded on the card and used again after a
  bytes round trip (thread count included).
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN
from clm_assets.models.base import (
    ModelCard,
    ModelError,
    TradingModel,
    data_hash,
    library_versions,
    training_matrix,
)

MIN_TRAIN_ROWS = 100
"""Fewest usable rows (label known, ``label_sign != 0``) a GBDT model will fit on."""

TOP_FEATURES = 10

_SEED_KEYS = ("seed", "random_state", "random_seed")


class GBDTModel(TradingModel):
    """Shared fit / predict / validation of the boosted-tree families.

    Subclasses supply the library calls: :meth:`_train`, :meth:`_predict_proba`,
    :meth:`_payload` and :meth:`_from_payload`.
    """

    library: ClassVar[str]
    """pip name of the library, recorded in ``card.library_versions``."""

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        # before the unknown-name check, which would only say "unknown parameter 'seed'"
        clash = [k for k in _SEED_KEYS if k in (params or {})]
        if clash:
            raise ModelError(f"{self.family}: pass the seed as seed=, not params {clash}")
        super().__init__(params, seed)
        rounds = self.params.get("n_estimators")
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise ModelError(f"{self.family}: n_estimators must be an int >= 1, got {rounds!r}")
        self.seed = int(seed)
        self._booster: Any = None

    # -- library hooks ---------------------------------------------------------------

    @abstractmethod
    def _train(
        self, x: np.ndarray, y: np.ndarray, names: list[str]
    ) -> tuple[Any, list[float], dict[str, float]]:
        """Fit a booster; return it, the per-round training logloss and gain per feature."""

    @abstractmethod
    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(up) for every row of a finite float64 matrix in ``card.feature_columns`` order."""

    # -- shared contract -------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, horizon: int) -> ModelCard:
        if not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ModelError(f"{self.family}: horizon must be an int >= 1, got {horizon!r}")
        if "open_time" not in frame.columns:
            raise ModelError(f"{self.family}: training frame has no 'open_time' column")
        usable, features, unlabeled = training_matrix(frame)
        usable = usable[usable[LABEL_SIGN] != 0]
        if len(usable) < MIN_TRAIN_ROWS:
            raise ModelError(
                f"{self.family}: {len(usable)} usable training rows (label known, "
                f"label_sign != 0, no NaN feature), need at least {MIN_TRAIN_ROWS}"
            )
        x = _float_matrix(usable, features, self.family)
        infinite = [c for c, bad in zip(features, ~np.isfinite(x).all(axis=0), strict=True) if bad]
        if infinite:
            raise ModelError(
                f"{self.family}: infinite values in features {infinite[:5]} ({len(infinite)} "
                "columns)"
            )
        y = (usable[LABEL_SIGN].to_numpy(dtype="float64") > 0).astype("float64")
        ups = int(y.sum())
        if ups == 0 or ups == len(y):
            only = "up" if ups else "down"
            raise ModelError(
                f"{self.family}: labels hold a single class ({len(y)} rows, all {only}): "
                "nothing to separate"
            )

        started = time.perf_counter()
        booster, loss_curve, gain = self._train(x, y, features)
        self.train_seconds = time.perf_counter() - started
        self._booster = booster

        open_time = pd.to_datetime(usable["open_time"])
        self.card = ModelCard(
            family=self.family,
            params=dict(self.params),
            seed=self.seed,
            horizon=int(horizon),
            feature_columns=list(features),
            train_start=open_time.min().isoformat(),
            train_end=open_time.max().isoformat(),
            rows=len(usable),
            rows_unlabeled=unlabeled,
            data_hash=data_hash(usable, [*features, LABEL_RETURN, LABEL_SIGN]),
            library_versions=library_versions(self.library),
            loss_curve=[float(v) for v in loss_curve],
            top_features=_top_features(gain, features),
        )
        return self.card

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.card is None or self._booster is None:
            raise ModelError(f"{self.family}: predict called on an unfitted model")
        needed = ["open_time", *self.card.feature_columns]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ModelError(
                f"{self.family}: frame lacks columns the model was trained on: {missing}"
            )
        x = _float_matrix(frame, self.card.feature_columns, self.family)
        complete = np.isfinite(x).all(axis=1)
        score = np.full(len(frame), np.nan)
        if complete.any():
            score[complete] = self._predict_proba(np.ascontiguousarray(x[complete]))
        position = np.clip(2.0 * score - 1.0, -1.0, 1.0)  # NaN stays NaN
        return pd.DataFrame(
            {"open_time": frame["open_time"].to_numpy(), "score": score, "position": position},
            index=frame.index,
        )

    @classmethod
    def _from_payload(cls, payload: bytes, card: ModelCard) -> GBDTModel:
        model = cls(params=card.params, seed=card.seed)
        model._booster = model._load_booster(payload)
        return model

    @abstractmethod
    def _load_booster(self, payload: bytes) -> Any: ...

    def _booster_or_raise(self) -> Any:
        if self._booster is None:
            raise ModelError(f"{self.family}: no fitted booster to serialise")
        return self._booster

    def _rounds(self) -> int:
        return int(self.params["n_estimators"])

    def _library_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k != "n_estimators"}


class XGBoostModel(GBDTModel):
    """``xgb.train`` binary:logistic classifier; payload is the booster as UBJSON."""

    family = "xgboost"
    library = "xgboost"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "n_estimators": 500,
            "max_depth": 7,
            "eta": 0.05,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 1.0,
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            # One thread: on 2 shared cores OpenMP threads spin waiting for a core and a
            # 5 s fit took 15-128 s under load (benchmarks/bench_models.py); set more on
            # dedicated hardware.
            "nthread": 1,
        }

    def _threads(self) -> int:
        return int(self.params["nthread"])

    def _train(
        self, x: np.ndarray, y: np.ndarray, names: list[str]
    ) -> tuple[Any, list[float], dict[str, float]]:
        params = {**self._library_params(), "seed": self.seed, "verbosity": 0}
        evals_result: dict[str, dict[str, list[float]]] = {}
        try:
            dtrain = xgb.DMatrix(x, label=y, feature_names=names, nthread=self._threads())
            booster = xgb.train(
                params,
                dtrain,
                num_boost_round=self._rounds(),
                evals=[(dtrain, "train")],
                evals_result=evals_result,
                verbose_eval=False,
            )
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"xgboost: training failed: {exc}") from exc
        curve = evals_result.get("train", {}).get("logloss", [])
        gain = booster.get_score(importance_type="total_gain")
        return booster, curve, {k: float(v) for k, v in gain.items()}

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.card is not None
        dmat = xgb.DMatrix(x, feature_names=self.card.feature_columns, nthread=self._threads())
        return np.asarray(self._booster.predict(dmat), dtype="float64")

    def _payload(self) -> bytes:
        return bytes(self._booster_or_raise().save_raw("ubj"))

    def _load_booster(self, payload: bytes) -> Any:
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(payload))  # bytes is read as a path; bytearray as data
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"xgboost: payload is not a loadable booster: {exc}") from exc
        booster.set_param({"nthread": self._threads()})
        return booster


class LightGBMModel(GBDTModel):
    """``lgb.train`` binary classifier; payload is ``model_to_string()`` as UTF-8."""

    family = "lightgbm"
    library = "lightgbm"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "n_estimators": 500,
            "max_depth": 7,
            "num_leaves": 63,  # < 2**7 leaves: depth 7 stays the binding limit, as in XGBoost
            "learning_rate": 0.05,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
            "min_data_in_leaf": 20,
            "objective": "binary",
            "metric": "binary_logloss",
            "deterministic": True,
            "force_row_wise": True,  # LightGBM's advice alongside deterministic=True
            "num_threads": 1,  # see XGBoostModel: OpenMP spinning on shared cores
        }

    def _threads(self) -> int:
        return int(self.params["num_threads"])

    def _train(
        self, x: np.ndarray, y: np.ndarray, names: list[str]
    ) -> tuple[Any, list[float], dict[str, float]]:
        params = {**self._library_params(), "seed": self.seed, "verbosity": -1}
        record: dict[str, dict[str, list[float]]] = {}
        try:
            dtrain = lgb.Dataset(x, label=y, feature_name=names, params=params)
            booster = lgb.train(
                params,
                dtrain,
                num_boost_round=self._rounds(),
                valid_sets=[dtrain],
                valid_names=["train"],
                callbacks=[lgb.record_evaluation(record)],
            )
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"lightgbm: training failed: {exc}") from exc
        curve = record.get("train", {}).get("binary_logloss", [])
        gain = dict(
            zip(
                booster.feature_name(),
                booster.feature_importance(importance_type="gain").tolist(),
                strict=True,
            )
        )
        return booster, curve, gain

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.predict(x, num_threads=self._threads()), dtype="float64")

    def _payload(self) -> bytes:
        return self._booster_or_raise().model_to_string().encode("utf-8")

    def _load_booster(self, payload: bytes) -> Any:
        try:
            return lgb.Booster(model_str=payload.decode("utf-8"))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ModelError(f"lightgbm: payload is not a loadable booster: {exc}") from exc


def _float_matrix(frame: pd.DataFrame, columns: list[str], family: str) -> np.ndarray:
    """The columns as one float64 array (nullable NA -> NaN), or a ModelError naming why."""
    try:
        return frame[columns].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{family}: features are not all numeric: {exc}") from exc


def _top_features(gain: dict[str, float], features: list[str]) -> dict[str, float]:
    """Top features by total gain, each as its share of the total gain of all features.

    Shares are normalized over every feature, then the ten largest are kept: with ten or
    fewer features they sum to 1, otherwise to the share the top ten carry. A model with no
    split at all has no gain to share and gets an empty dict.
    """
    total = sum(v for v in gain.values() if math.isfinite(v) and v > 0)
    if total <= 0:
        return {}
    shares = {f: gain.get(f, 0.0) / total for f in features if gain.get(f, 0.0) > 0}
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FEATURES]
    return {f: float(s) for f, s in ranked}
