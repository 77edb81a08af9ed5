"""Two families trained in one run by Dagster's multiprocess executor, from the CLI.

The fits run side by side while every step that opens the DuckDB file waits for the one
slot of the ``duckdb`` pool. The run's lock timeout is one millisecond: had two processes
opened the file at once, one would have failed at once instead of queueing, so a run that
succeeds never met the lock. The event log shows the queue and the overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.assets.runs import DUCKDB_POOL
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAMILIES = ("xgboost", "lightgbm")
AS_OF = "2024-02-10"
PARAMS = {  # a few seconds each, so that two fits have time to overlap
    "xgboost": {"n_estimators": 300, "max_depth": 6, "nthread": 1},
    "lightgbm": {"n_estimators": 400, "num_threads": 1},
}

MULTIPROCESS = {
    "max_concurrent": 4,
    # step processes forked from a server that imported the code location once: a spawned
    # step re-imports it (~10 s here), a forked one starts in well under a second
    "start_method": {"forkserver": {"preload_modules": ["clm_assets.definitions"]}},
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A deployment with features through the as-of day, on an instance whose dagster.yaml
    is the project's (the duckdb pool has one slot)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLM_")}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "CLM_SOURCE": "synthetic",
            "CLM_SYMBOLS": "BTC-USDT,ETH-USDT",
            "CLM_START_DATE": "2024-01-01",
            "CLM_END_DATE": "2024-03-01",
            "CLM_TRAIN_DAYS": "20",
            "CLM_EVAL_DAYS": "5",
            "CLM_FAMILIES": ",".join(FAMILIES),
            "CLM_MODEL_PARAMS": json.dumps(PARAMS),
            "CLM_DB_PATH": str(tmp_path / "clm.duckdb"),
            "CLM_LOCK_TIMEOUT_S": "0.001",
        }
    )
    settings = Settings.from_env(env)
    materialize(settings, ["market_data/raw_ohlcv", "features/features"], "2024-01-01", AS_OF)
    return env


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends[event.step_key] = entry.timestamp
    assert starts.keys() == ends.keys()
    return {key: (starts[key], ends[key]) for key in starts}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def test_fits_run_in_parallel_while_duckdb_steps_queue_for_the_pool(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"execution": {"config": {"multiprocess": MULTIPROCESS}}}))
    selection = ",".join(f"models/{f}" for f in FAMILIES)
    done = subprocess.run(
        [
            str(BIN / "dagster"), "asset", "materialize", "-m", "clm_assets.definitions",
            "--select", selection, "-c", str(config),
            "--partition-range", f"{AS_OF}|BTC-USDT...{AS_OF}|ETH-USDT",
        ],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        spans = _step_spans(instance, record.dagster_run.run_id)
        pool = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
    assert pool.limit == 1 and not pool.claimed_slots  # one slot, given back at the end

    readers = [f"models__{f}.read_{f}_windows" for f in FAMILIES]
    writers = [f"models__{f}.store_{f}" for f in FAMILIES]
    fits = [f"models__{f}.fit_{f}" for f in FAMILIES]
    assert sorted(spans) == sorted(readers + writers + fits)
    file_steps = readers + writers
    for i, a in enumerate(file_steps):  # one at a time on the file
        for b in file_steps[i + 1 :]:
            assert _overlap(spans[a], spans[b]) <= 0, (a, b, spans[a], spans[b])
    # a fit ran while the other family's steps were under way (not each: on 2 busy cores a
    # forked step can start 2-3 s late, after the other family's short fit has ended)
    (xgb, lgbm) = fits
    others = {xgb: [s for s in spans if "lightgbm" in s], lgbm: [s for s in spans if "xgb" in s]}
    overlaps = [_overlap(spans[fit], spans[s]) for fit, steps in others.items() for s in steps]
    assert max(overlaps) > 0, spans

    store = DuckDBStore(env["CLM_DB_PATH"])
    for family in FAMILIES:  # one model per partition, stored by the store steps
        stored = store.query(f"SELECT symbol, as_of FROM models.{family} ORDER BY symbol")
        assert stored["symbol"].tolist() == ["BTC-USDT", "ETH-USDT"]
        assert (stored["as_of"] == pd.Timestamp(AS_OF, tz="UTC")).all()
