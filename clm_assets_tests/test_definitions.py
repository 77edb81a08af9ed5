"""The asset graph as a reviewed snapshot: a change to lineage shows up as a diff here.

Regenerate after an intended change with ``CLM_UPDATE_SNAPSHOTS=1 pytest -k snapshot``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.resources.duckdb_io_manager import partition_expr_for
from clm_assets.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
    else:
        dims = {"": partitions_def}
    out = {}
    for name, part in dims.items():
        keys = part.get_partition_keys()
        out[name] = {
            "type": type(part).__name__,
            "count": len(keys),
            "first": keys[0],
            "last": keys[-1],
        }
    return out


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    pools: dict[dg.AssetKey, dict[str, str | None]] = {}  # each step of the asset: its pool
    specs: dict[dg.AssetKey, list[dg.AssetCheckSpec]] = {}
    for assets_def in graph.assets_defs:  # checks defined apart from their asset included
        for spec in assets_def.check_specs:
            specs.setdefault(spec.asset_key, []).append(spec)
        for key in assets_def.keys:
            pools[key] = {op.name: op.pool for op in assets_def.node_def.iterate_op_defs()}
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy.policy_type)
            if node.backfill_policy
            else None,
            "step_pools": pools[key],
            "checks": sorted(
                f"{spec.name}{' (blocking)' if spec.blocking else ''}"
                for spec in specs.get(key, [])
            ),
        }
    return {"assets": assets}


def test_asset_graph_snapshot() -> None:
    snapshot = graph_snapshot(build_definitions(Settings()))
    if os.environ.get("CLM_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text())


def test_every_partitioned_asset_maps_each_dimension_to_a_column() -> None:
    """The stock IO manager only notices a missing dimension on the second write."""
    defs = build_definitions(Settings())
    for assets_def in defs.resolve_asset_graph().assets_defs:
        for key in assets_def.keys:
            if assets_def.partitions_def is None:
                continue
            metadata = assets_def.metadata_by_key[key]
            partition_expr_for(key, assets_def.partitions_def, metadata)


def test_definitions_load_for_every_source(tmp_path: Path) -> None:
    for source in ("sample", "synthetic", "exchange"):
        settings = Settings.from_env(
            {"CLM_SOURCE": source, "CLM_DB_PATH": str(tmp_path / "x.duckdb")}
        )
        defs = build_definitions(settings)
        assert defs.resolve_asset_graph().get_all_asset_keys()


@pytest.mark.parametrize(
    ("cron", "first", "last"),
    [
        ("0 */6 * * *", "2017-07-02-00:00", "2018-12-31-18:00"),
        ("0 */4 * * *", "2017-07-02-00:00", "2018-12-31-20:00"),
        ("0 0 * * 0", "2017-07-02", "2018-12-23"),
    ],
)
def test_any_cadence_loads_with_ordinary_dates(cron: str, first: str, last: str) -> None:
    """CLM_START_DATE / CLM_END_DATE are plain days whatever the cadence; a sub-daily one
    used to fail at load unless both were written as 2017-07-02-00:00."""
    settings = Settings.from_env(
        {"CLM_MODEL_CRON": cron, "CLM_START_DATE": "2017-07-02", "CLM_END_DATE": "2019-01-01"}
    )
    graph = build_definitions(settings).resolve_asset_graph()
    keys = graph.get(dg.AssetKey(["models", "xgboost"])).partitions_def.get_partition_keys()
    assert (keys[0], keys[-1]) == (f"{first}|BTC-USD", f"{last}|BTC-USD")
