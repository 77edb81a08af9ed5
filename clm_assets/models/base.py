"""One interface for every model family.

A model is fitted on a features frame (see ``clm_assets.features.schema``), predicts a
target position in [-1, 1] per bar with the raw score behind it, and serialises to bytes
that carry its ``ModelCard``. Nothing here knows about Dagster or DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import struct
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any, ClassVar

import pandas as pd

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN, feature_columns


class ModelError(RuntimeError):
    """A model could not be fitted, loaded or used. Never replaced by a stand-in."""


@dataclass
class ModelCard:
    """Lineage and training facts of one fitted model; travels inside its bytes."""

    family: str
    params: dict[str, Any]
    seed: int
    horizon: int
    feature_columns: list[str]
    train_start: str
    train_end: str
    rows: int
    data_hash: str
    library_versions: dict[str, str]
    train_seconds: float = 0.0
    loss_curve: list[float] = field(default_factory=list)
    top_features: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls(**json.loads(text))


def data_hash(frame: pd.DataFrame, columns: list[str]) -> str:
    """sha256 of the exact training inputs, so a model version names the data it saw."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def library_versions(*packages: str) -> dict[str, str]:
    return {p: importlib_metadata.version(p) for p in ("numpy", "pandas", *packages)}


def training_matrix(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows usable for supervised training and the feature columns, or a clear error.

    Rows whose label is still pending (null) are dropped: their future is unknown.
    """
    features = feature_columns(frame)
    if not features:
        raise ModelError("training frame has no feature columns (prefix 'f_')")
    usable = frame.dropna(subset=[LABEL_RETURN, LABEL_SIGN])
    bad = usable[features].columns[usable[features].isna().any()].tolist()
    if bad:
        raise ModelError(f"NaN in features {bad[:5]} ({len(bad)} columns)")
    constant = usable[features].nunique() <= 1
    if len(usable) and constant.all():
        raise ModelError("all features are constant: nothing to learn from")
    return usable, features


class TradingModel(ABC):
    """A fitted or unfitted model of one family."""

    family: ClassVar[str]

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.params = {**self.default_params(), **(params or {})}
        self.seed = seed
        self.card: ModelCard | None = None

    @classmethod
    @abstractmethod
    def default_params(cls) -> dict[str, Any]: ...

    @abstractmethod
    def fit(self, frame: pd.DataFrame, horizon: int) -> ModelCard:
        """Fit on a features frame with labels; sets and returns ``self.card``."""

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns ``open_time``, ``score``, ``position`` (in [-1, 1]) for every row of
        ``frame``; rows that lack the history the model needs get null position."""

    @abstractmethod
    def _payload(self) -> bytes: ...

    @classmethod
    @abstractmethod
    def _from_payload(cls, payload: bytes, card: ModelCard) -> TradingModel: ...

    def to_bytes(self) -> bytes:
        """``len(card) | card json | family payload``: the card travels with the weights."""
        if self.card is None:
            raise ModelError(f"{self.family}: cannot serialise an unfitted model")
        card = self.card.to_json().encode()
        return struct.pack(">I", len(card)) + card + self._payload()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TradingModel:
        (n,) = struct.unpack(">I", blob[:4])
        card = ModelCard.from_json(blob[4 : 4 + n].decode())
        if card.family != cls.family:
            raise ModelError(f"bytes hold a {card.family} model, not {cls.family}")
        model = cls._from_payload(blob[4 + n :], card)
        model.card = card
        return model
