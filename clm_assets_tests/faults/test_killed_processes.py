"""Processes killed with SIGKILL: no handler runs, nothing is cleaned up.

* A run killed in the middle of writing a partition range: DuckDB's transaction and WAL
  leave the range either as it was or wholly written, never half; a re-run completes it.
* The launching process (``dagster asset materialize``) killed while its step runs: the run
  worker is gone, its step process is orphaned, and Dagster alone would leave the run
  STARTED forever. The daemon's run monitoring, with clm's ``WatchedRunLauncher``, kills
  the orphan and marks the run failed, then gives back the run's slot of the ``duckdb``
  pool; a re-run in the same instance takes the slot and completes the data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import pytest

from clm_assets.assets.runs import DUCKDB_POOL
from clm_assets.settings import Settings
from clm_assets.sources.synthetic import SyntheticSource
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAW = "market_data/raw_ohlcv"
SYMBOL = "BTC-USDT"
STORED, RANGE = ("2024-01-01", "2024-01-10"), ("2024-01-01", "2024-01-30")
"""One-minute bars: 43,200 in the range, a write long enough to be caught in the act."""
MARK = 1_000_000.0
"""Added to the stored volumes first, so that the old rows are told from re-written ones."""


def _env(tmp: Path, poll_s: int = 2) -> dict[str, str]:
    """A DAGSTER_HOME whose dagster.yaml is the project's, polling runs every ``poll_s`` and
    freeing a finished run's pool slots ``poll_s`` after its end."""
    home = tmp / "home"
    home.mkdir()
    config = (ROOT / "dagster.yaml").read_text()
    for setting in ("poll_interval_seconds", "free_slots_after_run_end_seconds"):
        assert f"{setting}: 30" in config
        config = config.replace(f"{setting}: 30", f"{setting}: {poll_s}")
    (home / "dagster.yaml").write_text(config)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": SYMBOL,
        "CLM_INTERVAL": "1m",
        "CLM_START_DATE": "2024-01-01",
        "CLM_END_DATE": "2024-02-01",
        "CLM_DB_PATH": str(tmp / "clm.duckdb"),
    }


def _materialize_cli(env: dict[str, str], first: str, last: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "dagster"), "asset", "materialize", "-m", "clm_assets.definitions",
            "--select", RAW, "--partition-range", f"{first}|{SYMBOL}...{last}|{SYMBOL}",
        ],
        env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[dict[str, str], pd.DataFrame]]:
    """Ten stored days, their volumes marked."""
    env = _env(tmp_path)
    settings = Settings.from_env(env)
    materialize(settings, [RAW], *STORED)
    store = DuckDBStore(settings.db_path)
    with store.transaction() as conn:
        conn.execute(f"UPDATE market_data.raw_ohlcv SET volume = volume + {MARK}")
    yield env, _bars(env)


def _bars(env: dict[str, str]) -> pd.DataFrame:
    return DuckDBStore(env["CLM_DB_PATH"]).query(
        "SELECT * FROM market_data.raw_ohlcv ORDER BY open_time"
    )


def _holds_lock(path: str, session: int) -> bool:
    """Whether a process of ``session`` holds the DuckDB file's lock (``/proc/locks``)."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as locks:
        for line in locks:
            if inode in line:
                pid = int(line.split()[4])
                try:
                    return os.getsid(pid) == session
                except ProcessLookupError:
                    return False
    return False


def _whole_or_untouched(
    env: dict[str, str], before: pd.DataFrame, instance: dg.DagsterInstance | None = None
) -> str:
    """Check the range after a kill against what it was and what a re-run (in ``instance``,
    an ephemeral one by default) writes; say which of the two it was."""
    after = _bars(env)  # opens cleanly: the WAL is replayed or discarded
    assert not after.duplicated("open_time").any()
    materialize(Settings.from_env(env), [RAW], *RANGE, instance)
    complete = _bars(env)
    first, last = (pd.Timestamp(d, tz="UTC") for d in RANGE)
    truth = SyntheticSource(seed=7).fetch(SYMBOL, "1m", first, last + pd.Timedelta(days=1))
    pd.testing.assert_frame_equal(complete[truth.columns], truth)  # a re-run completes it
    if len(after) == len(before):
        pd.testing.assert_frame_equal(after, before)  # untouched, marks and all
        return "untouched"
    pd.testing.assert_frame_equal(after, complete)  # wholly written
    return "wholly written"


def test_a_run_killed_while_writing_leaves_the_range_whole_or_untouched(history) -> None:
    env, before = history
    db, wal = env["CLM_DB_PATH"], Path(env["CLM_DB_PATH"] + ".wal")
    run = _materialize_cli(env, *RANGE)
    # the moment the step holds the file's lock with its write-ahead log on disk: the
    # transaction replacing the range has begun writing
    while not (wal.exists() and _holds_lock(db, run.pid)):
        assert run.poll() is None, run.stderr.read().decode()[-2000:]
        time.sleep(0.0005)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)

    print(f"\nkilled while writing: the range was left {_whole_or_untouched(env, before)}")


def _run_record(instance: dg.DagsterInstance) -> dg.RunRecord:
    (record,) = instance.get_run_records()
    return record


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED)
    return [e.dagster_event.pid for e in events if e.dagster_event is not None]


def test_a_killed_launcher_is_marked_failed_by_the_daemon_and_its_orphan_stopped(
    history, tmp_path: Path
) -> None:
    env, before = history
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-m", "clm_assets.definitions"],
        env=env, start_new_session=True,
        stdout=(tmp_path / "daemon.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        try:
            launcher = _materialize_cli(env, *RANGE)
            deadline = time.monotonic() + 120
            while not (instance.get_run_records() and _step_pids(instance, _run_id(instance))):
                assert launcher.poll() is None, launcher.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the step process never started"
                time.sleep(0.2)
            (orphan,) = _step_pids(instance, _run_id(instance))
            launcher.kill()  # the launching process only: its step process lives on
            launcher.wait(timeout=30)
            assert psutil.pid_exists(orphan)
            pool = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
            assert pool.active_run_ids == {_run_id(instance)}  # the write holds the file's slot

            while (record := _run_record(instance)).dagster_run.status != (
                dg.DagsterRunStatus.FAILURE
            ):
                assert record.dagster_run.status == dg.DagsterRunStatus.STARTED
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                assert time.monotonic() < deadline + 60, "run monitoring never marked the run"
                time.sleep(0.5)
            failure = instance.all_logs(_run_id(instance), of_type=dg.DagsterEventType.RUN_FAILURE)
            message = failure[-1].dagster_event.message
            # the dead run's slot of the duckdb pool is given back by the daemon, so that
            # the next write is not queued forever behind a run that will never end
            while instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).claimed_slots:
                assert time.monotonic() < deadline + 90, "the dead run's pool slot stayed taken"
                time.sleep(0.5)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
        assert f"run worker pid {launcher.pid} is gone" in message
        assert f"killed its orphaned step processes [{orphan}]" in message
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie"

        left = _whole_or_untouched(env, before, instance)  # the re-run takes the freed slot
    print(f"\nlauncher killed: the range was left {left}")


def _run_id(instance: dg.DagsterInstance) -> str:
    return _run_record(instance).dagster_run.run_id
