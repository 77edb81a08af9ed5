"""``monitoring/live_performance`` on the live world: flat until the first decision takes
effect, then the production model paper-traded bar by bar by the backtest engine, each
day's rows a slice of one run over the whole record, and each partition's own divergence
report."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from clm_assets.backtest.walkforward import walk_forward
from clm_assets.backtest.window import context_days
from clm_assets.partitions import as_of_window, model_partitions
from clm_assets.registry.promotion import history
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.monitoring.world import LIVE_FIRST, LIVE_LAST, SYMBOL, LiveWorld

KEY = dg.AssetKey(["monitoring", "live_performance"])
WORLD_END = pd.Timestamp("2024-03-01", tz="UTC")


def _rows(world: LiveWorld) -> pd.DataFrame:
    store = DuckDBStore(world.settings.db_path)
    return store.query(
        "SELECT * FROM monitoring.live_performance WHERE symbol = ? ORDER BY open_time", [SYMBOL]
    )


def _metadata(world: LiveWorld, day: str) -> dict:
    records = world.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[f"{day}|{SYMBOL}"]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_flat_until_the_first_decision_then_the_champion_trades(live_world: LiveWorld) -> None:
    rows = _rows(live_world)
    assert rows["open_time"].min() == LIVE_FIRST
    assert rows["open_time"].max() == LIVE_LAST + pd.Timedelta(hours=23)
    first_decision_end = pd.Timestamp("2024-02-14 04:00", tz="UTC")
    before = rows[rows["open_time"] <= first_decision_end]
    assert (before["champion"] == "none").all()
    assert (before[["position", "return", "cost"]] == 0).all().all()
    after = rows[rows["open_time"] > first_decision_end]
    assert (after["family"] == "xgboost").all()
    assert set(after["version"]) == set(history_versions(live_world))
    assert (after["cost"] > 0).any() and (after["position"] != 0).any()
    meta = _metadata(live_world, "2024-02-13")
    assert meta["status"] == "flat, no champion" and meta["day_return"] == 0.0


def history_versions(world: LiveWorld) -> list[str]:
    with DuckDBStore(world.settings.db_path).connect() as conn:
        decided = history(conn, SYMBOL)
    return list(decided[decided["as_of"] < WORLD_END]["champion_version"])


def test_each_day_is_a_slice_of_one_engine_run_over_the_whole_record(
    live_world: LiveWorld,
) -> None:
    settings = live_world.settings
    store = DuckDBStore(settings.db_path)
    with store.connect() as conn:
        decisions = history(conn, SYMBOL)
    decisions = decisions[decisions["as_of"] < WORLD_END]  # other tests may decide later
    partitions = model_partitions(settings)
    ends = {a: as_of_window(partitions, a)[1] for a in decisions["as_of"]}
    whole = walk_forward(
        store,
        SYMBOL,
        settings.interval,
        decisions,
        ends,
        context=context_days(pd.Timedelta(hours=1)) * pd.Timedelta(days=1),
        fee_bps=settings.fee_bps,
        until=LIVE_LAST + pd.Timedelta(days=1),
    ).result.to_frame()
    rows = _rows(live_world).set_index("open_time")
    traded = whole.set_index("open_time")
    np.testing.assert_array_equal(rows.loc[traded.index, "return"], traded["return"])
    np.testing.assert_array_equal(rows.loc[traded.index, "equity"], traded["equity"])


def test_each_partition_reports_its_own_day_and_the_divergence(live_world: LiveWorld) -> None:
    rows = _rows(live_world)
    for day in ("2024-02-20", "2024-03-01"):
        meta = _metadata(live_world, day)
        mine = rows[rows["open_time"].dt.strftime("%Y-%m-%d") == day]
        assert meta["bars"] == len(mine) == 24
        assert np.isclose(meta["day_return"], (1 + mine["return"]).prod() - 1, rtol=1e-12)
        assert meta["status"] == "trading"
        assert (
            "| since promotion (xgboost since 2024-02-14 04:00) | live | backtest |"
            in (meta["divergence"])
        )
        assert meta["divergence_plot"].startswith("![live vs backtest](data:image/png;base64,")
        assert meta["cusum_threshold"] > 0 and meta["degradation"] in ("ok", "FIRED")
        assert "haircut" in meta["degradation_reason"]
    newest = _metadata(live_world, f"{LIVE_LAST:%Y-%m-%d}")
    assert -1.0 <= newest["pending_order"] <= 1.0  # the target to fill at the next open
    assert _metadata(live_world, "2024-02-20")["pending_order"] == "n/a"
