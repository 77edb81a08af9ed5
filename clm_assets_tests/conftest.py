"""Shared fixtures: deployment settings pointing at a temporary DuckDB file; the order in
which modules start under ``make test``'s two workers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg
import pytest

from clm_assets.settings import Settings

SLOWEST_FIRST = (
    "test_live_loop.py",  # run alone by make test, after the others
    "ui/test_dagster_ui.py",
    "assets/test_evaluation.py",
    "faults/test_concurrent_access.py",
    "instance/test_postgres_instance.py",
    "models/test_ray_cluster.py",
    "faults/test_killed_processes.py",
    "assets/test_parallel_training.py",
    "test_backfill.py",
    "assets/test_training.py",
)
"""Modules taking a minute or more (``--durations``), longest first. ``make test`` hands
whole modules to two workers in collection order (``--no-loadscope-reorder``: xdist would
otherwise start the modules with the most tests first, and the one-test live loop last);
started last, one of these would leave a worker running alone for minutes at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        module = item.path.relative_to(root).as_posix()
        return SLOWEST_FIRST.index(module) if module in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a module, and of the rest, is kept


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
