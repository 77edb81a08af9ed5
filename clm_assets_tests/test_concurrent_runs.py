"""Two Dagster processes materializing different partitions into one DuckDB file at the
same time: DuckDB allows one writer, so the second waits for the lock, and both land."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clm_assets.storage.duckdb_store import DuckDBStore

BIN = Path(sys.executable).parent


def test_two_processes_materializing_at_once_both_land(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": "BTC-USDT,ETH-USDT",
        "CLM_START_DATE": "2024-01-01",
        "CLM_DB_PATH": str(tmp_path / "clm.duckdb"),
    }
    procs = []
    for i, symbol in enumerate(("BTC-USDT", "ETH-USDT")):
        home = tmp_path / f"home{i}"
        home.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    "clm_assets.definitions",
                    "--select",
                    "market_data/raw_ohlcv",
                    "--partition-range",
                    f"2024-02-01|{symbol}...2024-02-20|{symbol}",
                ],
                env={**env, "DAGSTER_HOME": str(home)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    counts = DuckDBStore(tmp_path / "clm.duckdb").query(
        "SELECT symbol, count(*) AS n, count(DISTINCT open_time) AS distinct_bars "
        "FROM market_data.raw_ohlcv GROUP BY symbol ORDER BY symbol"
    )
    assert counts["n"].tolist() == [20 * 24, 20 * 24]
    assert counts["distinct_bars"].tolist() == [20 * 24, 20 * 24]
