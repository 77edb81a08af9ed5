"""Shared fixtures: deployment settings pointing at a temporary DuckDB file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clm_assets.settings import Settings


def synthetic_settings(db_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "source": "synthetic",
        "symbols": ("BTC-USDT", "ETH-USDT"),
        "start_date": "2024-01-01",
        "end_date": "2025-01-01",
        "db_path": db_path,
        "lock_timeout_s": 60.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def synthetic(tmp_path: Path) -> Settings:
    return synthetic_settings(tmp_path / "clm.duckdb")


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def materialize(settings: Settings, selection: list[str], first: str, last: str):
    """One in-process run of ``selection`` over days ``[first, last]`` × every symbol."""
    import pandas as pd

    from clm_assets.definitions import build_definitions
    from clm_assets.pipeline import materialize_days

    with dg.DagsterInstance.ephemeral() as instance:
        return materialize_days(
            build_definitions(settings),
            settings,
            selection,
            pd.Timestamp(first, tz="UTC"),
            pd.Timestamp(last, tz="UTC"),
            instance,
        )
