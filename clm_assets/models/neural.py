"""Neural forecasters (N-HiTS, PatchTST) from ``neuralforecast`` behind ``TradingModel``.

Both forecast the per-bar log return of ``close`` (``y``, one series per symbol) ``h =
horizon`` bars ahead. The score of bar t is the sum of the h forecasts, i.e. the predicted
log return from the close of t to the close of t + horizon, made with data up to and
including bar t only. The position is ``tanh(score / scale)`` where ``scale`` is the std of
the realized horizon log returns in the training data (kept in ``card.params``).

N-HiTS also reads the ``f_`` features as historical exogenous inputs; PatchTST reads ``y``
only. Series positions are bar indices (integer ``ds``), so the models see bars, not clock
time. ``neuralforecast`` (import ~7 s) is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import struct
import tarfile
import tempfile
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from clm_assets.features.schema import PRICE_COLUMN, feature_columns
from clm_assets.models.base import (
    ModelCard,
    ModelError,
    TradingModel,
    data_hash,
    library_versions,
)
from clm_assets.models.tarball import pack_directory

_TRAINER_KWARGS: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
}
_QUIET_LOGGERS = ("lightning.pytorch", "pytorch_lightning", "lightning_fabric", "lightning")
_LOSSES = ("mae", "mse", "huber")
_SCALERS = ("robust", "standard")
_DEFAULT_ID = "series"


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op torch threads, then restore the process setting.

    On a small shared CPU one thread is several times faster than torch's default: idle
    OpenMP workers spin against the other processes (PatchTST 20 steps: 1.5 s with 1 thread,
    6.5-21 s with 2 on 2 busy cores). ``None`` leaves torch's setting alone.
    """
    import torch

    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _own_rng() -> Iterator[None]:
    """neuralforecast calls ``pl.seed_everything`` on every model construction and predict,
    reseeding the process-wide ``random`` / numpy / torch generators (and setting
    ``PL_GLOBAL_SEED``); put them back so callers do not inherit that side effect."""
    import random

    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's INFO chatter and neuralforecast / Lightning warnings."""
    previous = {}
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", module=r"(neuralforecast|pytorch_lightning|lightning)"
            )
            warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers)")
            yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


def _loss(name: str) -> Any:
    from neuralforecast.losses.pytorch import MAE, MSE, HuberLoss

    if name not in _LOSSES:
        raise ModelError(f"unknown loss {name!r}; expected one of {_LOSSES}")
    return {"mae": MAE, "mse": MSE, "huber": HuberLoss}[name]()


def _ids(frame: pd.DataFrame) -> pd.Series:
    if "symbol" in frame.columns:
        if frame["symbol"].isna().any():
            raise ModelError("null symbol in frame")
        return frame["symbol"].astype(str)
    return pd.Series(_DEFAULT_ID, index=frame.index)


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Frame sorted by (symbol, open_time) with ``_id``, ``_row`` (original position) and
    ``y`` (log return of close vs the previous bar of the same symbol, NaN on the first)."""
    for column in ("open_time", PRICE_COLUMN):
        if column not in frame.columns:
            raise ModelError(f"frame has no {column!r} column")
    close = pd.to_numeric(frame[PRICE_COLUMN], errors="coerce").astype("float64")
    if (close <= 0).any():
        raise ModelError("non-positive close price: log returns are undefined")
    work = frame.assign(_id=_ids(frame).to_numpy(), _row=np.arange(len(frame)), _close=close)
    work = work.sort_values(["_id", "open_time"], kind="stable")
    if work.duplicated(["_id", "open_time"]).any():
        raise ModelError("duplicate (symbol, open_time) rows in frame")
    work["y"] = np.log(work["_close"]).groupby(work["_id"], sort=False).diff()
    return work


def _floats(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.empty((len(frame), 0))
    return frame[columns].to_numpy(dtype="float64", na_value=np.nan)


class NeuralForecastModel(TradingModel):
    """Shared fit / predict / bytes logic; subclasses build the ``neuralforecast`` model."""

    uses_exog: ClassVar[bool]

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(params, seed)
        self._nf: Any = None

    @classmethod
    def common_params(cls) -> dict[str, Any]:
        return {
            "input_size": 64,
            "max_steps": 100,
            "learning_rate": 1e-3,
            "scaler_type": "robust",
            "loss": "mae",
            "windows_batch_size": 256,
            # series (= anchor bars) per batch at prediction time
            "valid_batch_size": 1024,
            # intra-op torch threads while fitting / predicting; None = torch's default
            "torch_threads": 1,
        }

    def _build(self, horizon: int, exog: list[str]) -> Any:
        """The unfitted ``neuralforecast`` model."""
        raise NotImplementedError

    # ---- feature selection -------------------------------------------------------------

    def _exog_columns(self, frame: pd.DataFrame) -> list[str]:
        if not self.uses_exog:
            return []
        chosen = self.params.get("features")
        available = feature_columns(frame)
        if chosen is None:
            if not available:
                raise ModelError(f"{self.family}: frame has no feature columns (prefix 'f_')")
            return available
        chosen = list(chosen)
        missing = [c for c in chosen if c not in frame.columns]
        if missing:
            raise ModelError(f"{self.family}: configured features missing from frame: {missing}")
        return chosen

    # ---- fit ---------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, horizon: int) -> ModelCard:
        from neuralforecast import NeuralForecast

        horizon = int(horizon)
        if horizon < 1:
            raise ModelError(f"{self.family}: horizon must be >= 1, got {horizon}")
        input_size = int(self.params["input_size"])
        if self.params["scaler_type"] not in _SCALERS:
            raise ModelError(f"{self.family}: scaler_type must be one of {_SCALERS}")
        exog = self._exog_columns(frame)

        work = _ordered(frame)
        values = _floats(work, exog)
        usable = np.isfinite(work["y"].to_numpy()) & np.isfinite(values).all(axis=1)
        train = work.loc[usable]
        if train.empty:
            raise ModelError(f"{self.family}: no rows with a log return and all features")
        counts = train.groupby("_id", sort=True).size()
        needed = input_size + horizon
        short = counts[counts < needed]
        if len(short):
            raise ModelError(
                f"{self.family}: too few rows to train: input_size + horizon = {needed} rows "
                f"with features are needed per symbol, got {short.to_dict()}"
            )

        # realized forward log return over the horizon, per symbol, on the training rows
        log_close = np.log(train["_close"])
        fwd = log_close.groupby(train["_id"], sort=False).shift(-horizon) - log_close
        scale = float(np.nanstd(fwd.to_numpy(), ddof=1)) if fwd.notna().sum() > 1 else math.nan
        if not math.isfinite(scale) or scale <= 0:
            raise ModelError(f"{self.family}: realized horizon returns have no spread ({scale})")

        long = pd.DataFrame(
            {
                "unique_id": train["_id"].to_numpy(),
                "ds": train.groupby("_id", sort=False).cumcount().to_numpy(),
                "y": train["y"].to_numpy(),
            }
        )
        for i, column in enumerate(exog):
            long[column] = values[usable, i]

        try:
            with _quiet(), _own_rng(), _torch_threads(self.params["torch_threads"]):
                model = _in_column_order(self._build(horizon, exog))
                nf = NeuralForecast(models=[model], freq=1)
                started = time.perf_counter()
                nf.fit(df=long, val_size=0)
                seconds = time.perf_counter() - started
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.family}: neuralforecast training failed: {exc}") from exc

        loss_curve = [float(loss) for _, loss in nf.models[0].train_trajectories]
        if not loss_curve or not all(math.isfinite(x) for x in loss_curve):
            raise ModelError(f"{self.family}: training produced no finite loss curve")

        self._nf = nf
        self.train_seconds = seconds
        self.card = ModelCard(
            family=self.family,
            params={**self.params, "scale": scale},
            seed=self.seed,
            horizon=horizon,
            feature_columns=exog,
            train_start=pd.Timestamp(train["open_time"].min()).isoformat(),
            train_end=pd.Timestamp(train["open_time"].max()).isoformat(),
            rows=len(train),
            rows_unlabeled=0,  # labels are not read: the target is the close's log return
            data_hash=data_hash(train, ["_id", "open_time", "_close", *exog]),
            library_versions=library_versions("neuralforecast", "torch", "pytorch-lightning"),
            loss_curve=loss_curve,
        )
        return self.card

    # ---- predict -----------------------------------------------------------------------

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.card is None or self._nf is None:
            raise ModelError(f"{self.family}: predict before fit")
        card = self.card
        input_size = int(card.params["input_size"])
        scale = float(card.params["scale"])
        exog = list(card.feature_columns)
        missing = [c for c in exog if c not in frame.columns]
        if missing:
            raise ModelError(f"{self.family}: frame lacks trained features {missing}")

        work = _ordered(frame)
        values = _floats(work, exog)
        y = work["y"].to_numpy()
        valid = np.isfinite(y) & np.isfinite(values).all(axis=1)
        # an anchor t needs input_size complete rows ending at t, all of the same symbol
        ids = work["_id"].to_numpy()
        ends = np.arange(input_size - 1, len(work))
        starts = ends - input_size + 1
        filled = np.concatenate([[0], np.cumsum(valid)])
        complete = np.zeros(len(work), dtype=bool)
        complete[ends] = (filled[ends + 1] - filled[starts] == input_size) & (
            ids[starts] == ids[ends]
        )
        anchors = np.flatnonzero(complete)

        score = np.full(len(frame), np.nan)
        if len(anchors):
            offsets = np.arange(-input_size + 1, 1)
            take = (anchors[:, None] + offsets[None, :]).ravel()
            long = pd.DataFrame(
                {
                    "unique_id": np.repeat(np.arange(len(anchors)), input_size),
                    "ds": np.tile(np.arange(input_size), len(anchors)),
                    "y": y[take],
                }
            )
            for i, column in enumerate(exog):
                long[column] = values[take, i]
            try:
                with _quiet(), _own_rng(), _torch_threads(self.params["torch_threads"]):
                    forecast = self._nf.predict(df=long)
            except Exception as exc:
                raise ModelError(f"{self.family}: neuralforecast prediction failed: {exc}") from exc
            column = repr(self._nf.models[0])
            sums = forecast.groupby("unique_id")[column].agg(["sum", "size"])
            if len(sums) != len(anchors) or (sums["size"] != card.horizon).any():
                raise ModelError(f"{self.family}: forecast shape does not match the anchors")
            if not np.isfinite(sums["sum"]).all():
                raise ModelError(f"{self.family}: non-finite forecasts for complete windows")
            score[work["_row"].to_numpy()[anchors]] = (
                sums["sum"].reindex(np.arange(len(anchors))).to_numpy()
            )

        return pd.DataFrame(
            {
                "open_time": frame["open_time"].to_numpy(),
                "score": score,
                "position": np.tanh(score / scale),
            },
            index=frame.index,
        )

    # ---- bytes -------------------------------------------------------------------------

    def _payload(self) -> bytes:
        if self._nf is None:
            raise ModelError(f"{self.family}: cannot serialise an unfitted model")
        tmp = tempfile.mkdtemp(prefix="clm-nf-save-")
        try:
            with _quiet():
                self._nf.save(tmp, save_dataset=False, overwrite=True)
            for weights in Path(tmp).rglob("*.safetensors"):
                _canonical_safetensors(weights)
            return pack_directory(Path(tmp), compress=False)
        except Exception as exc:
            raise ModelError(
                f"{self.family}: saving the neuralforecast model failed: {exc}"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def _from_payload(cls, payload: bytes, card: ModelCard) -> TradingModel:
        from neuralforecast import NeuralForecast

        tmp = tempfile.mkdtemp(prefix="clm-nf-load-")
        try:
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            with _quiet(), _own_rng():
                nf = NeuralForecast.load(tmp)
        except Exception as exc:
            raise ModelError(
                f"{cls.family}: loading the neuralforecast model failed: {exc}"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for model in nf.models:
            model.trainer_kwargs.update(_TRAINER_KWARGS)
            _in_column_order(model)
        defaults = cls.default_params()  # the card adds what fit learned ("scale")
        instance = cls(
            params={k: v for k, v in card.params.items() if k in defaults}, seed=card.seed
        )
        instance._nf = nf
        return instance


def _in_column_order(model: Any) -> Any:
    """Make ``model`` normalize its exogenous columns in the dataset's order, not hash order.

    neuralforecast picks the columns its scaler normalizes as a ``set`` difference
    (``BaseModel._get_temporal_exogenous_cols``) and gathers them in that set's order, which
    follows ``PYTHONHASHSEED``, and that order reaches the fitted weights in the last bits:
    with the 35 production features two processes fitting the same data with the same seed
    stored N-HiTS weights up to 2e-6 apart (equal with a fixed hash seed, or with this fix):
    another version on every retrain, and predictions that change between processes.
    Same columns, fixed order; bound to this instance (neuralforecast's deep copies rebind
    it), the library itself is left alone.
    """

    def ordered(self: Any, temporal_cols: pd.Index) -> list[str]:
        categorical = set(self.hist_cat_exog_list + self.futr_cat_exog_list)
        wanted = set(self.hist_exog_list + self.futr_exog_list) - categorical
        return [c for c in temporal_cols.tolist() if c in wanted]

    model._get_temporal_exogenous_cols = types.MethodType(ordered, model)
    return model


def _canonical_safetensors(path: Path) -> None:
    """Rewrite a ``.safetensors`` header with sorted keys, in place.

    The safetensors writer keeps its ``__metadata__`` (neuralforecast's hyper-parameters) in
    a Rust hash map, so two saves of the same weights order it differently from one process
    to the next and the bytes differ. The header is JSON in which tensors are addressed by
    offsets into the data that follows, so re-serializing it sorted (padded with spaces to
    8 bytes, as the format asks) leaves every tensor where it was.
    """
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size :])


class NHITSModel(NeuralForecastModel):
    """N-HiTS on log returns with the ``f_`` features (or ``params["features"]``) as
    historical exogenous inputs."""

    family: ClassVar[str] = "nhits"
    uses_exog: ClassVar[bool] = True

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        # mlp_units: one [hidden, hidden] pair per stack (3 stacks). neuralforecast's 512 is
        # halved for CPU: with 60 features x 64 bars the first layer of each block dominates
        # (2160 bars, 100 steps: 512 -> 45 s, 25.9 MB; 256 -> 29 s, 10.6 MB).
        return {**cls.common_params(), "features": None, "mlp_units": [[256, 256]] * 3}

    def _build(self, horizon: int, exog: list[str]) -> Any:
        from neuralforecast.models import NHITS

        p = self.params
        return NHITS(
            h=horizon,
            input_size=int(p["input_size"]),
            hist_exog_list=exog,
            mlp_units=[list(map(int, units)) for units in p["mlp_units"]],
            max_steps=int(p["max_steps"]),
            learning_rate=float(p["learning_rate"]),
            scaler_type=p["scaler_type"],
            loss=_loss(p["loss"]),
            windows_batch_size=int(p["windows_batch_size"]),
            valid_batch_size=int(p["valid_batch_size"]),
            random_seed=self.seed,
            **_TRAINER_KWARGS,
        )


class PatchTSTModel(NeuralForecastModel):
    """PatchTST on log returns alone (it takes no exogenous features)."""

    family: ClassVar[str] = "patchtst"
    uses_exog: ClassVar[bool] = False

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            **cls.common_params(),
            "hidden_size": 64,
            "n_heads": 4,
            "encoder_layers": 2,
            "linear_hidden_size": 128,
            "patch_len": 16,
            "stride": 8,
        }

    def _build(self, horizon: int, exog: list[str]) -> Any:
        from neuralforecast.models import PatchTST

        p = self.params
        return PatchTST(
            h=horizon,
            input_size=int(p["input_size"]),
            hidden_size=int(p["hidden_size"]),
            n_heads=int(p["n_heads"]),
            encoder_layers=int(p["encoder_layers"]),
            linear_hidden_size=int(p["linear_hidden_size"]),
            patch_len=int(p["patch_len"]),
            stride=int(p["stride"]),
            max_steps=int(p["max_steps"]),
            learning_rate=float(p["learning_rate"]),
            scaler_type=p["scaler_type"],
            loss=_loss(p["loss"]),
            windows_batch_size=int(p["windows_batch_size"]),
            valid_batch_size=int(p["valid_batch_size"]),
            random_seed=self.seed,
            **_TRAINER_KWARGS,
        )
