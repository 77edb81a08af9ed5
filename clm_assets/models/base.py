"""One interface for every model family.

A model is fitted on a features frame (see ``clm_assets.features.schema``), predicts a
target position in [-1, 1] per bar with the raw score behind it, and serialises to bytes
that carry its ``ModelCard``. Nothing here knows about Dagster or DuckDB.

The bytes are a function of data, params, seed and code only (invariant 6): a model's
version is the hash of its bytes, and the registry keeps a decided status (the champion)
only for the same version, so a wall-clock value inside them would make every retraining
dethrone the champion. Timings therefore live outside the card (``TradingModel.train_seconds``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import metadata as importlib_metadata
from typing import Any, ClassVar, NamedTuple

import pandas as pd

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN, feature_columns


class ModelError(RuntimeError):
    """A model could not be fitted, loaded or used. Never replaced by a stand-in."""


@dataclass
class ModelCard:
    """Lineage and training facts of one fitted model; travels inside its bytes, so it
    holds only what data, params, seed and code determine (no timing, no clock)."""

    family: str
    params: dict[str, Any]
    seed: int
    horizon: int
    feature_columns: list[str]
    train_start: str
    train_end: str
    rows: int
    """Rows the model was fitted on."""
    rows_unlabeled: int
    """Rows of the training window left out because their label is not known (null): a
    count a user can compare with ``rows``, rather than rows that vanish silently. 0 for
    families that do not read the labels (the neural forecasters)."""
    data_hash: str
    library_versions: dict[str, str]
    loss_curve: list[float] = field(default_factory=list)
    top_features: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        extra, missing = sorted(set(values) - known), sorted(required - set(values))
        if extra or missing:
            raise ModelError(
                f"model card does not match this clm version (unknown fields {extra}, missing "
                f"{missing}): the model was stored by another version; re-materialize it"
            )
        return cls(**values)


def data_hash(frame: pd.DataFrame, columns: list[str]) -> str:
    """sha256 of the exact training inputs, so a model version names the data it saw."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def library_versions(*packages: str) -> dict[str, str]:
    return {p: importlib_metadata.version(p) for p in ("numpy", "pandas", *packages)}


class TrainingMatrix(NamedTuple):
    rows: pd.DataFrame
    """Rows with a known label."""
    features: list[str]
    unlabeled: int
    """Rows dropped because their label is null (recorded as ``card.rows_unlabeled``)."""


def training_matrix(frame: pd.DataFrame) -> TrainingMatrix:
    """Rows usable for supervised training, the feature columns and how many rows were
    dropped for a missing label, or a clear error.

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
    return TrainingMatrix(usable, features, len(frame) - len(usable))


def check_param_names(family: str, params: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    """Refuse a parameter the family does not define: the libraries ignore unknown keys
    (``max_dept`` trains with the default depth), yet the card would record it as used."""
    unknown = sorted(set(params) - set(allowed))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(allowed), n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise ModelError(
        f"{family}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
        f"allowed: {', '.join(sorted(allowed))}"
    )


class TradingModel(ABC):
    """A fitted or unfitted model of one family."""

    family: ClassVar[str]

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        defaults = self.default_params()
        check_param_names(self.family, params or {}, defaults)
        self.params = {**defaults, **(params or {})}
        self.seed = seed
        self.card: ModelCard | None = None
        self.train_seconds: float | None = None
        """Wall-clock seconds of the last ``fit``; not in the bytes (they must not vary
        between two fits), so None on a model loaded from bytes."""

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
