"""One model fit as plain data: a :class:`FitJob` in, a :class:`FitResult` (bytes) out.

A job holds everything a fit depends on (family, params, seed, frame, horizon) and nothing
that ties it to a process, so the same job can run here (:func:`fit_local`) or as a task on
a Ray cluster (:mod:`clm_assets.models.cluster`) and give the same bytes: the model's bytes
are a function of data, params, seed and code only (invariant 6). Results carry bytes, not
live models, because the step that stores them is the one DuckDB writer; where the fit ran
is recorded beside them, never inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from clm_assets.models.base import ModelCard, ModelError
from clm_assets.models.families import model_class

LOCAL = "local"
"""``FitResult.node`` / ``node_ip`` of a fit that ran in this process."""


@dataclass(frozen=True)
class FitJob:
    """One model to fit."""

    label: str
    """Names the job in errors, e.g. ``"xgboost 2024-02-14|BTC-USDT"``."""
    family: str
    """A key of :data:`clm_assets.models.families.FAMILIES`."""
    params: dict[str, Any]
    seed: int
    frame: pd.DataFrame
    """A features frame (see :mod:`clm_assets.features.schema`) with labels."""
    horizon: int


@dataclass(frozen=True)
class FitResult:
    """A fitted model as bytes, with where and how long it took."""

    label: str
    blob: bytes
    """``model.to_bytes()``: the card travels inside."""
    card: ModelCard
    train_seconds: float
    """The model's own ``train_seconds`` (not in the bytes)."""
    node: str
    """Where it ran: :data:`LOCAL`, or the Ray node id (hex)."""
    node_ip: str
    """:data:`LOCAL`, or the Ray node's IP address."""


def fit_local(job: FitJob) -> FitResult:
    """Fit ``job`` in this process."""
    return run_fit(job, node=LOCAL, node_ip=LOCAL)


def run_fit(job: FitJob, node: str, node_ip: str) -> FitResult:
    """Fit ``job`` here and record ``node`` / ``node_ip`` as where it ran; a ``ModelError``
    (or an unknown family) is re-raised naming the job's label."""
    try:
        family = model_class(job.family)
    except KeyError as exc:
        raise ModelError(f"{job.label}: {exc.args[0]}") from None
    try:
        model = family(params=job.params, seed=job.seed)
        card = model.fit(job.frame, job.horizon)
    except ModelError as exc:
        raise ModelError(f"{job.label}: {exc}") from exc
    if model.train_seconds is None:  # the base class allows it; a result must not guess it
        raise ModelError(f"{job.label}: {job.family} did not record its training time")
    return FitResult(
        label=job.label,
        blob=model.to_bytes(),
        card=card,
        train_seconds=float(model.train_seconds),
        node=node,
        node_ip=node_ip,
    )
