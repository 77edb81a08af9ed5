"""Damaged files: the production model's bytes altered, a DuckDB file cut short. Each is a
clear error naming what is damaged, raised before anything is written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError
from clm_assets.storage.models import ModelChecksumError
from clm_assets_tests.conftest import materialize, synthetic_settings

BIN = Path(sys.executable).parent
LIVE = "monitoring/live_performance"
HISTORY = ("2024-01-01", "2024-02-15")


def _record(settings: Settings) -> pd.DataFrame:
    return DuckDBStore(settings.db_path).query(
        "SELECT * FROM monitoring.live_performance ORDER BY symbol, open_time"
    )


def test_a_corrupted_production_model_stops_paper_trading_naming_it(
    world_copy: Settings,
) -> None:
    before = _record(world_copy)
    with DuckDBStore(world_copy.db_path).transaction() as conn:
        conn.execute("UPDATE models.xgboost SET blob = blob || '\\x00'::BLOB")
    with pytest.raises(ModelChecksumError, match=r"xgboost model for BTC-USDT .* sha256"):
        materialize(world_copy, [LIVE], "2024-03-08", "2024-03-09")
    pd.testing.assert_frame_equal(_record(world_copy), before)  # the record is kept as it was

    # the CLI's stitched record reads the same bytes and refuses them the same way
    env = {
        "PATH": str(BIN),
        "CLM_DB_PATH": str(world_copy.db_path),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": "BTC-USDT",
        "CLM_START_DATE": world_copy.start_date,
        "CLM_END_DATE": str(world_copy.end_date),
        "CLM_MODEL_CRON": world_copy.model_cron,
    }
    cli = subprocess.run(
        [BIN / "clm", "walkforward", "--symbol", "BTC-USDT"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "xgboost model for BTC-USDT" in cli.stderr and "sha256" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_truncated_database_fails_a_write_naming_the_file_and_changes_no_byte(
    tmp_path: Path,
) -> None:
    settings = synthetic_settings(tmp_path / "clm.duckdb", symbols=("BTC-USDT",))
    materialize(
        settings, ["market_data/raw_ohlcv", "features/features"], "2024-01-01", "2024-02-15"
    )
    whole = settings.db_path.read_bytes()
    settings.db_path.write_bytes(whole[: len(whole) // 2])
    cut = hashlib.sha256(settings.db_path.read_bytes()).hexdigest()
    with pytest.raises(StorageError, match=rf"DuckDB file {settings.db_path} is truncated"):
        materialize(settings, ["market_data/raw_ohlcv"], "2024-02-16", "2024-02-16")
    assert hashlib.sha256(settings.db_path.read_bytes()).hexdigest() == cut
    assert not Path(f"{settings.db_path}.wal").exists()
