"""Training knobs shown in the launchpad: the seed and per-family parameter overrides."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field


class TrainingResource(dg.ConfigurableResource):
    """``params`` maps a family to overrides of its defaults (step counts for real use)."""

    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)

    def params_for(self, family: str) -> dict[str, Any]:
        return dict(self.params.get(family, {}))
