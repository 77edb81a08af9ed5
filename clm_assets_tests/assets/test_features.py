"""features through real Dagster runs: warm-up, partition equivalence, pending labels."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from clm_assets.assets.features.assets import warmup_days
from clm_assets.definitions import build_definitions
from clm_assets.features.schema import LABEL_HORIZON, LABEL_RETURN, label_columns
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets.storage.slices import MissingPartitionsError
from clm_assets_tests.conftest import materialize

RAW, FEATURES = "market_data/raw_ohlcv", "features/features"


def _days(settings: Settings, selection: str, first: str, last: str, instance):
    return materialize(settings, [selection], first, last, instance)


def _features(settings: Settings) -> pd.DataFrame:
    return DuckDBStore(settings.db_path).query(
        "SELECT * FROM features.features ORDER BY symbol, open_time"
    )


def test_partition_by_partition_equals_one_ranged_run(
    synthetic: Settings, instance: dg.DagsterInstance
) -> None:
    assert warmup_days(synthetic.interval) == 30
    _days(synthetic, RAW, "2024-01-01", "2024-02-15", instance)
    ranged = synthetic
    _days(ranged, FEATURES, "2024-02-10", "2024-02-14", instance)
    together = _features(ranged)

    job = build_definitions(synthetic).resolve_implicit_global_asset_job_def()
    DuckDBStore(synthetic.db_path).query("DROP TABLE features.features")
    for day in pd.date_range("2024-02-10", "2024-02-14"):
        for symbol in synthetic.symbols:
            job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey.from_user_string(FEATURES)],
                partition_key=f"{day:%Y-%m-%d}|{symbol}",
            )
    alone = _features(synthetic)
    assert len(together) == 5 * 24 * 2
    pd.testing.assert_frame_equal(alone, together)
    assert together[LABEL_RETURN].notna().all()  # the next day's bars exist


def test_missing_warmup_partitions_are_named(synthetic: Settings, instance) -> None:
    _days(synthetic, RAW, "2024-02-01", "2024-02-20", instance)
    with pytest.raises(MissingPartitionsError, match=r"2024-01-21\|BTC-USDT"):
        _days(synthetic, FEATURES, "2024-02-20", "2024-02-20", instance)


def test_first_partitions_warm_up_on_what_exists_and_say_so(
    synthetic: Settings, instance: dg.DagsterInstance
) -> None:
    _days(synthetic, RAW, "2024-01-01", "2024-01-03", instance)
    result = _days(synthetic, FEATURES, "2024-01-02", "2024-01-03", instance)
    meta = {
        str(m.partition): m.metadata
        for m in result.asset_materializations_for_node("features__features")
    }
    for symbol in synthetic.symbols:
        first, last = meta[f"2024-01-02|{symbol}"], meta[f"2024-01-03|{symbol}"]
        assert first["warmup"].value.startswith("partial: the source's data starts 2024-01-01")
        assert "1 of 30 days" in first["warmup"].value and "2 of 30" in last["warmup"].value
        assert first["rows_with_nan_features"].value > 0
        # Only the last day lacks its next day: its final `horizon` labels are pending.
        assert first["labels_pending"].value == 0
        assert last["labels_pending"].value == synthetic.label_horizon
        assert first["rows"].value == last["rows"].value == 24
    stored = _features(synthetic)
    # The horizon the labels were made with travels with them, for training to check.
    assert last["label_horizon"].value == synthetic.label_horizon
    assert set(stored[LABEL_HORIZON]) == {synthetic.label_horizon}
    pending = stored[stored[LABEL_RETURN].isna()]
    assert (pending["open_time"] >= pd.Timestamp("2024-01-03 20:00", tz="UTC")).all()
    assert LABEL_HORIZON not in label_columns(stored)  # a setting, not a target
