"""Training throughput: 10 synthetic symbols × 5 families (50 fits) in one run, with one and
with two workers, two ways.

a. Dagster's multiprocess executor, ``max_concurrent`` 1 vs 2 (step processes forked from a
   server that preloaded the code location): the read/fit/store steps of different
   families overlap; the steps that open the DuckDB file queue on the ``duckdb`` pool.
b. A Ray cluster of 1 vs 2 nodes (1 CPU each, on loopback, token auth on, started like the
   tests' cluster), the run in-process: each family's 10 fits are Ray tasks spread over the
   nodes, the bytes stored by the run's own store step.

Each mode is one ``dagster asset materialize`` of ``models/*`` for one as-of day × the 10
symbols, in its own fresh DAGSTER_HOME (the project's dagster.yaml) over the same DuckDB
file with the features already stored. Throughput is fits per second of the run (start →
end, from the instance); ``fit_s`` is the sum of the fits' own training seconds (metadata).
Every mode must store the same model versions as mode a with one worker (same data, params
and seed give the same bytes, wherever they were fitted): a difference raises.

``python benchmarks/bench_throughput.py`` prints the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from instance_runs import synthetic_env

from clm_assets.definitions import build_definitions
from clm_assets.pipeline import materialize_days
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.models.ray_cluster import local_ray_cluster

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SYMBOLS = tuple(f"SYN{i:02d}-USDT" for i in range(10))
FAMILIES = ("xgboost", "lightgbm", "nhits", "patchtst", "ppo")
AS_OF = "2024-02-10"
PARAMS = {  # small, so that the 50 fits take minutes, not hours, on 2 cores
    "xgboost": {"n_estimators": 200, "nthread": 1},
    "lightgbm": {"n_estimators": 200, "num_threads": 1},
    "nhits": {"max_steps": 20, "input_size": 24},
    "patchtst": {"max_steps": 20, "input_size": 24},
    "ppo": {"iterations": 2, "train_batch_size": 512, "minibatch_size": 128, "window": 64},
}
FORKSERVER = {"forkserver": {"preload_modules": ["clm_assets.definitions"]}}


def _multiprocess(workers: int) -> dict:
    return {"multiprocess": {"max_concurrent": workers, "start_method": FORKSERVER}}


MODES = (
    ("multiprocess, 1 worker", _multiprocess(1), 0),
    ("multiprocess, 2 workers", _multiprocess(2), 0),
    ("Ray, 1 node", {"in_process": {}}, 1),
    ("Ray, 2 nodes", {"in_process": {}}, 2),
)  # fmt: skip
"""(name, the run's executor config, Ray nodes: 0 = no cluster)."""

TARGETS = [
    ("every mode stores the same model versions", "versions_equal", "==", True),
    ("2 workers / 1 worker throughput (multiprocess)", "speedup_multiprocess", ">=", 1.3),
    ("2 nodes / 1 node throughput (Ray)", "speedup_ray", ">=", 1.3),
]


def _env(tmp: Path, db: Path, name: str, symbols: tuple[str, ...]) -> dict[str, str]:
    """Two months of the synthetic source (the as-of day and its training window), the
    benchmark's small params; no ``RAY_*`` of the caller (a mode's cluster sets its own)."""
    env = synthetic_env(tmp, name, db, symbols, pd.Timestamp("2024-01-01"), days=60)
    return {
        **{k: v for k, v in env.items() if not k.startswith("RAY_")},
        "CLM_TRAIN_DAYS": "20",
        "CLM_EVAL_DAYS": "5",
        "CLM_MODEL_PARAMS": json.dumps(PARAMS),
    }


def _prepare(env: dict[str, str]) -> float:
    """Raw bars and features of the 10 symbols up to the as-of day; seconds taken."""
    settings = Settings.from_env(env)
    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_days(
            build_definitions(settings),
            settings,
            ["market_data/raw_ohlcv", "features/features"],
            pd.Timestamp("2024-01-01", tz="UTC"),
            pd.Timestamp(AS_OF, tz="UTC"),
            instance,
        )
    return time.perf_counter() - t0


def _train(
    env: dict[str, str], executor: dict, tmp: Path, name: str, families: tuple[str, ...]
) -> dict:
    symbols = env["CLM_SYMBOLS"].split(",")
    first, last = symbols[0], symbols[-1]
    config = tmp / f"run_{name}.yaml"
    config.write_text(json.dumps({"execution": {"config": executor}}))
    cmd = [
        str(BIN / "dagster"), "asset", "materialize", "-m", "clm_assets.definitions",
        "--select", ",".join(f"models/{f}" for f in families), "-c", str(config),
        "--partition-range", f"{AS_OF}|{first}...{AS_OF}|{last}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (record,) = instance.get_run_records()
        if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            raise RuntimeError(f"{name}: run ended {record.dagster_run.status}")
        fit_s, nodes = 0.0, set()
        for family in families:
            key = dg.AssetKey(["models", family])
            for rec in instance.fetch_materializations(key, limit=100).records:
                meta = rec.asset_materialization.metadata
                fit_s += meta["training_seconds"].value
                nodes.add(meta["ray_node"].value)
        run_s = record.end_time - record.start_time
    return {"wall_s": wall, "run_s": run_s, "fit_s": fit_s, "nodes": len(nodes)}


def _versions(db: Path, families: tuple[str, ...]) -> dict[str, str]:
    store = DuckDBStore(db)
    out = {}
    for family in families:
        frame = store.query(f"SELECT symbol, version FROM models.{family} ORDER BY symbol")
        out.update(
            {f"{family} {s}": v for s, v in zip(frame["symbol"], frame["version"], strict=True)}
        )
    return out


def run(quick: bool = False) -> dict:
    """``quick``: 2 symbols × xgboost and lightgbm, to check the benchmark itself."""
    symbols, families = (SYMBOLS[:2], FAMILIES[:2]) if quick else (SYMBOLS, FAMILIES)
    fits = len(symbols) * len(families)
    with tempfile.TemporaryDirectory(prefix="bench_throughput_") as folder:
        tmp = Path(folder)
        db = tmp / "clm.duckdb"
        prepare_s = _prepare(_env(tmp, db, "prepare", symbols))
        result: dict = {
            "fits": fits, "symbols": len(symbols), "families": len(families),
            "prepare_s": prepare_s, "modes": {},
        }  # fmt: skip
        reference: dict[str, str] | None = None
        equal = True
        for i, (name, executor, nodes) in enumerate(MODES):
            env = _env(tmp, db, f"m{i}", symbols)
            load_before = os.getloadavg()[0]
            if nodes:
                with local_ray_cluster(nodes=nodes) as cluster:
                    env.update({**cluster.auth_env, "CLM_RAY_ADDRESS": cluster.address})
                    measured = _train(env, executor, tmp, f"m{i}", families)
            else:
                measured = _train(env, executor, tmp, f"m{i}", families)
            measured["fits_per_min"] = 60 * fits / measured["run_s"]
            measured["load"] = (load_before, os.getloadavg()[0])  # other work on the machine
            versions = _versions(db, families)
            if len(versions) != fits:
                raise RuntimeError(f"{name}: {len(versions)} models stored, not {fits}")
            reference = reference or versions
            measured["same_versions"] = versions == reference
            measured["differ"] = sorted(k for k in reference if versions[k] != reference[k])
            equal &= measured["same_versions"]
            result["modes"][name] = measured
            print(f"  [{name}: run {measured['run_s']:.0f} s]", flush=True)
    modes = result["modes"]
    result["versions_equal"] = equal
    result["speedup_multiprocess"] = (
        modes["multiprocess, 2 workers"]["fits_per_min"]
        / modes["multiprocess, 1 worker"]["fits_per_min"]
    )
    result["speedup_ray"] = (
        modes["Ray, 2 nodes"]["fits_per_min"] / modes["Ray, 1 node"]["fits_per_min"]
    )
    result["cpus"] = os.cpu_count()
    return result


def print_table(r: dict) -> None:
    print(
        f"\n{r['fits']} fits ({r['symbols']} synthetic symbols x {r['families']} families, "
        f"as-of {AS_OF}, {r['cpus']} CPUs); features prepared in {r['prepare_s']:.0f} s"
    )
    print(
        f"{'mode':<26}{'run s':>8}{'CLI s':>8}{'fit s':>8}{'fits/min':>10}{'nodes':>7}  same"
        "  load 1-min before/after"
    )
    for name, m in r["modes"].items():
        print(
            f"{name:<26}{m['run_s']:>8.1f}{m['wall_s']:>8.1f}{m['fit_s']:>8.1f}"
            f"{m['fits_per_min']:>10.2f}{m['nodes']:>7}  {m['same_versions']!s:<5}"
            f"  {m['load'][0]:.1f} / {m['load'][1]:.1f}"
        )
    for name, m in r["modes"].items():
        if m["differ"]:
            print(f"{name}: versions differ from the first mode for {', '.join(m['differ'])}")
    print(
        f"2 workers / 1: multiprocess {r['speedup_multiprocess']:.2f}x, "
        f"Ray {r['speedup_ray']:.2f}x; fit s = sum of the fits' own training seconds"
    )


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
