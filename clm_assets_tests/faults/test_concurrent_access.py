"""Several processes on one DuckDB file. Two backfills writing at once: DuckDB allows one
writer, so each waits for the lock, and both land. The CLI reading while another process
writes: it waits for the writer and reads what was committed, or gives up after
``CLM_LOCK_TIMEOUT_S`` with one line naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore

BIN = Path(sys.executable).parent


def test_two_backfills_writing_at_once_both_land(tmp_path: Path) -> None:
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


WRITER = """
import sys
from clm_assets.storage.duckdb_store import DuckDBStore
with DuckDBStore(sys.argv[1]).transaction() as conn:
    conn.execute("UPDATE monitoring.live_performance SET equity = equity")
    print("writing", flush=True)
    sys.stdin.readline()  # holds the write transaction until told to commit
"""


def _clm_status(settings: Settings, **extra: str) -> subprocess.Popen[str]:
    env = {
        "PATH": str(BIN),
        "CLM_DB_PATH": str(settings.db_path),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": "BTC-USDT",
        "CLM_START_DATE": settings.start_date,
        "CLM_END_DATE": str(settings.end_date),
        "CLM_MODEL_CRON": settings.model_cron,
        **extra,
    }
    return subprocess.Popen(
        [BIN / "clm", "status"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("lock_timeout_s", [600, 1])
def test_the_cli_reading_while_another_process_writes_waits_or_says_who_holds_the_file(
    world_copy: Settings, lock_timeout_s: int
) -> None:
    quiet_out, _ = _clm_status(world_copy).communicate(timeout=120)
    assert "champion: xgboost" in quiet_out
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(world_copy.db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdin is not None and writer.stdout is not None
    assert writer.stdout.readline() == "writing\n"
    busy = _clm_status(world_copy, CLM_LOCK_TIMEOUT_S=str(lock_timeout_s))
    if lock_timeout_s == 1:  # it gives up while the writer holds on: one line naming the file
        out, err = busy.communicate(timeout=120)
        writer.communicate("commit\n", timeout=60)
        assert busy.returncode == 1 and out == ""
        (line,) = err.strip().splitlines()
        assert str(world_copy.db_path) in line and "CLM_LOCK_TIMEOUT_S" in line
    else:  # it waits for the writer, then reads what was committed
        with pytest.raises(subprocess.TimeoutExpired):
            busy.wait(timeout=6)
        writer.communicate("commit\n", timeout=60)
        out, err = busy.communicate(timeout=120)
        assert busy.returncode == 0, err
        assert out == quiet_out
    assert writer.returncode == 0
