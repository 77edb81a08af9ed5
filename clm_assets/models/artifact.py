"""A fitted model as stored: bytes plus the facts needed to find, verify and trust it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pandas as pd

from clm_assets.models.base import ModelCard
from clm_assets.models.families import FAMILIES, load_model


@dataclass(frozen=True)
class ModelArtifact:
    family: str
    symbol: str
    as_of: pd.Timestamp
    """Start of the as-of partition window (UTC); the model saw only data before its end."""
    blob: bytes
    card: ModelCard
    code_version: str
    train_seconds: float | None = None
    """Wall-clock seconds the fit took. Kept beside the bytes, not in them: the version is
    the hash of the bytes and must be the same for the same data, params and seed. None
    when not measured (an artifact built from bytes alone), never a made-up number."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()

    @property
    def version(self) -> str:
        """Short content address: the same bytes are the same version."""
        return self.sha256[:12]

    def load(self):
        return load_model(self.family, self.blob)


@dataclass
class TrainedModels:
    """The models one step produced or loaded, one per (symbol, as-of) partition."""

    artifacts: list[ModelArtifact] = field(default_factory=list)


def code_version(family: str) -> str:
    """Package version plus a hash of the family's source: a code change is a new version."""
    module = FAMILIES[family].split(":")[0]
    path = Path(__file__).parents[2] / (module.replace(".", "/") + ".py")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return f"{metadata.version('clm')}+{digest}"
