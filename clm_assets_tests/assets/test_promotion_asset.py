"""``promotion/promoted_model`` through Dagster: one run deciding three as-of partitions
attaches each partition's own decision to that partition's materialization (defect 2),
with the gates taken from ``CLM_GATE_*``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.pipeline import materialize_days
from clm_assets.registry.promotion import history
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import synthetic_settings
from clm_assets_tests.registry.world import FEE_BPS, build_world

KEY = dg.AssetKey(["promotion", "promoted_model"])
SYMBOL = "BTC-USDT"


def test_each_partition_of_a_multi_partition_run_carries_its_own_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = synthetic_settings(
        tmp_path / "clm.duckdb",
        symbols=(SYMBOL,),
        end_date="2024-02-10",
        fee_bps=FEE_BPS,
        reports_dir=tmp_path / "reports",
    )
    store = DuckDBStore(settings.db_path, lock_timeout_s=30)
    # daily as-ofs from day 7, 7-day evaluation windows: an edge and no edge
    build_world(store, {"xgboost": "edge", "lightgbm": "noise"}, days=40, first_as_of_day=7)
    # records at the as-ofs of days 20, 21, 22 cover 479, 503, 527 bars: only the last
    # reaches 21.5 days (516 bars)
    monkeypatch.setenv("CLM_GATE_LOOKBACK_DAYS", "30")
    monkeypatch.setenv("CLM_GATE_MIN_RECORD_DAYS", "21.5")
    first, last = pd.Timestamp("2024-01-21", tz="UTC"), pd.Timestamp("2024-01-23", tz="UTC")
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_days(
            build_definitions(settings), settings, ["promotion/promoted_model"], first, last,
            instance,
        )  # fmt: skip
        events = {}
        for day in ("2024-01-21", "2024-01-22", "2024-01-23"):
            key = f"{day}|{SYMBOL}"
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[key]), limit=5
            ).records
            assert len(records) == 1, key
            events[day] = records[0].asset_materialization.metadata
    with store.connect() as conn:
        rows = history(conn, SYMBOL)
    assert list(rows["action"]) == ["NO_CHAMPION", "NO_CHAMPION", "PROMOTED"]
    for row in rows.itertuples():
        meta = events[f"{row.as_of:%Y-%m-%d}"]
        assert meta["decision_id"].value == row.decision_id
        assert meta["action"].value == row.action
        assert meta["reason"].value == row.reason
        champion = "none" if row.champion_family is None else row.champion_family
        assert meta["champion"].value.split("@")[0] == champion
        assert meta["trials"].value == row.gate_reports["_decision"]["trials"] == 2
        assert "| xgboost |" in meta["gates"].value
    assert "insufficient record: 503 bars < 516" in rows.iloc[1]["reason"]
    assert rows.iloc[2]["champion_family"] == "xgboost"
    made_with = rows.iloc[2]["gate_reports"]["_decision"]
    assert made_with["gates"]["lookback_days"] == 30
    assert made_with["costs"] == events["2024-01-23"]["config"].value["costs"]
