"""Training knobs shown in the launchpad: the seed, per-family parameter overrides, and
where the fits run (this process, or an existing Ray cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from clm_assets.models.fitting import FitJob, FitResult, fit_local


class TrainingResource(dg.ConfigurableResource):
    """``params`` maps a family to overrides of its defaults (step counts for real use).

    ``ray_address`` (``CLM_RAY_ADDRESS``) names a running Ray cluster: the fits of a step
    are sent to it as tasks and their bytes come back here, so the Dagster step that
    stores them stays the DuckDB file's only writer. None fits in the step's process.
    """

    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    ray_address: str | None = None

    def params_for(self, family: str) -> dict[str, Any]:
        return dict(self.params.get(family, {}))

    def fit_all(self, jobs: Sequence[FitJob]) -> list[FitResult]:
        """Every job fitted, in order; a failure raises (no job is left out or replaced)."""
        if self.ray_address is None:
            return [fit_local(job) for job in jobs]
        from clm_assets.models.cluster import RayCluster

        with RayCluster(self.ray_address) as cluster:
            return cluster.fit_all(jobs)
