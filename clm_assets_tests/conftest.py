"""Shared fixtures: deployment settings pointing at a temporary DuckDB file."""

from __future__ import annotations

import contextlib
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


def materialize(
    settings: Settings,
    selection: list[str],
    first: str,
    last: str,
    instance: dg.DagsterInstance | None = None,
):
    """One in-process run of ``selection`` over days ``[first, last]`` × every symbol, in
    ``instance`` (a fresh ephemeral one by default)."""
    import pandas as pd

    from clm_assets.definitions import build_definitions
    from clm_assets.pipeline import materialize_days

    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.DagsterInstance.ephemeral())
        return materialize_days(
            build_definitions(settings),
            settings,
            selection,
            pd.Timestamp(first, tz="UTC"),
            pd.Timestamp(last, tz="UTC"),
            instance,
        )


def partition_metadata(
    settings: Settings, asset: str, first: str, last: str
) -> dict[str, dict[str, dg.MetadataValue]]:
    """One in-process run of ``asset`` over days ``[first, last]``, and the metadata each
    partition's materialization left in the instance: what the UI shows per partition."""
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(settings, [asset], first, last, instance)
        records = instance.fetch_materializations(
            dg.AssetKey.from_user_string(asset), limit=1000
        ).records
    metadata: dict[str, dict[str, dg.MetadataValue]] = {}
    for record in records:  # newest first
        event = record.asset_materialization
        assert event is not None and event.partition is not None
        metadata.setdefault(event.partition, dict(event.metadata))
    return metadata


@pytest.fixture(scope="session")
def live_world(tmp_path_factory: pytest.TempPathFactory):
    """The live world of ``monitoring/world.py``, built once per session (about 30 s of
    real training and scoring); tests may add decisions after 2024-03-01 only."""
    from clm_assets_tests.monitoring.world import GATES, build_live_world

    with pytest.MonkeyPatch.context() as patch:
        for name, value in GATES.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.ephemeral() as instance:
            yield build_live_world(tmp_path_factory.mktemp("live"), instance)
