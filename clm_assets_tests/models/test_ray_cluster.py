"""Fits on a real two-node Ray cluster (loopback, token authentication) through
:class:`~clm_assets.models.cluster.RayCluster` equal local fits byte for byte.

Moving training to a cluster must not change a model: a model's version is the hash of its
bytes, and the registry keeps the champion's status only for the same version (invariant 6).
PPO is the family at risk: locally it starts a Ray session of its own, on the cluster it
trains inside a Ray task, on the worker's connection.

The local reference fits run in a child process, started before the cluster so the two
overlap (the cluster takes ~18 s to start on 2 idle cores): a local PPO fit starts its own
Ray session, which cannot share a process with the cluster's driver.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from clm_assets.models.base import ModelError
from clm_assets.models.cluster import RayCluster
from clm_assets.models.fitting import FitJob, fit_local
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize, synthetic_settings
from clm_assets_tests.factories import FAST_PARAMS, simple_feature_frame
from clm_assets_tests.models.ray_cluster import LocalCluster, local_ray_cluster

FAMILIES = ("xgboost", "lightgbm", "ppo")
"""nhits is left out: importing neuralforecast costs ~7 s in every process that fits it."""
HORIZON = 4
SEED = 11
REPO = Path(__file__).parents[2]
LOCAL_FIT_TIMEOUT_S = 300
AS_OF = "2024-01-16"


def make_jobs() -> list[FitJob]:
    """Every family of :data:`FAMILIES` on two symbols' frames, with tiny params."""
    jobs = []
    for symbol, walk in (("BTC-USDT", 1), ("ETH-USDT", 2)):
        frame = simple_feature_frame(400, seed=walk, horizon=HORIZON, symbol=symbol)
        for family in FAMILIES:
            label = f"{family} 2024-01-17|{symbol}"
            jobs.append(FitJob(label, family, FAST_PARAMS[family], SEED, frame, HORIZON))
    return jobs


def write_local_fits(folder: str) -> None:
    """Entry point of the child process: ``<i>.bin``, the local fit of job ``i``."""
    for i, job in enumerate(make_jobs()):
        Path(folder, f"{i}.bin").write_bytes(fit_local(job).blob)


@pytest.fixture(scope="module")
def local_fits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], list[bytes]]]:
    """Start the local reference fits in a child process; yield a function that waits for
    them and returns their bytes in job order."""
    out = tmp_path_factory.mktemp("local-fits")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "from clm_assets_tests.models.test_ray_cluster import write_local_fits; "
        f"write_local_fits({str(out)!r})"
    )
    log = out / "child.log"  # a file, not a pipe nobody reads until the child is done
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=out,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait() -> list[bytes]:
        child.wait(timeout=LOCAL_FIT_TIMEOUT_S)
        assert child.returncode == 0, log.read_text(errors="replace")[-3000:]
        return [(out / f"{i}.bin").read_bytes() for i in range(len(make_jobs()))]

    try:
        yield wait
    finally:
        if child.poll() is None:  # a test failed before waiting: end it (its Ray with it)
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=60)


@pytest.fixture(scope="module")
def cluster(local_fits: Callable[[], list[bytes]]) -> Iterator[LocalCluster]:
    """The two-node cluster; it asks for ``local_fits`` only to start after them."""
    with local_ray_cluster(nodes=2) as running:
        yield running


@pytest.fixture
def with_token(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """The cluster, with its token in this process's environment as a driver needs it."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    for key, value in cluster.auth_env.items():
        monkeypatch.setenv(key, value)
    return cluster


def test_cluster_fits_equal_local_fits_and_spread_over_both_nodes(
    with_token: LocalCluster, local_fits: Callable[[], list[bytes]]
) -> None:
    import ray

    jobs = make_jobs()
    with RayCluster(with_token.address) as cluster:
        results = cluster.fit_all(jobs)
        nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    assert not ray.is_initialized()

    assert [r.label for r in results] == [j.label for j in jobs]
    assert len(nodes) == 2
    assert {r.node for r in results} == set(nodes), "the fits did not spread over both nodes"
    assert [r.node_ip for r in results] == [nodes[r.node] for r in results]
    assert [r.card.family for r in results] == [j.family for j in jobs]
    assert all(r.train_seconds > 0 for r in results)
    local = local_fits()
    differ = [r.label for r, blob in zip(results, local, strict=True) if r.blob != blob]
    assert differ == [], f"cluster bytes differ from local bytes for {differ}"


def test_a_job_failing_on_the_cluster_raises_naming_its_label(with_token: LocalCluster) -> None:
    import ray

    good = make_jobs()[0]
    frame = good.frame.copy()
    frame.loc[10:20, "f_ret_1"] = np.nan
    bad = FitJob("xgboost 2024-01-18|BTC-USDT", "xgboost", good.params, SEED, frame, HORIZON)
    with RayCluster(with_token.address) as cluster:
        with pytest.raises(ModelError, match="already initialized"), RayCluster(cluster.address):
            pass
        with pytest.raises(ModelError) as failed:
            cluster.fit_all([good, bad])
    assert not ray.is_initialized()
    assert str(failed.value).startswith(f"{bad.label}: ")
    assert "NaN in features ['f_ret_1']" in str(failed.value)


def test_connecting_without_the_token_fails_saying_what_to_set(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    # Ray retries a refused connection once a second, 20 times by default
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "1")
    with pytest.raises(ModelError) as refused, RayCluster(cluster.address):
        pass
    assert not ray.is_initialized()
    message = str(refused.value)
    assert f"the Ray cluster at {cluster.address} refused this process" in message
    assert "Authentication token is missing or incorrect" in message
    for name in ("RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        assert name in message


def test_the_training_asset_fits_on_the_cluster_and_stores_the_bytes_itself(
    with_token: LocalCluster, tmp_path: Path
) -> None:
    """``CLM_RAY_ADDRESS`` set: the models of a Dagster run are fitted on both nodes, each
    partition's metadata names its node, and the stored bytes equal the same run's without
    a cluster."""
    import dagster as dg

    families = ("xgboost", "lightgbm")
    settings = synthetic_settings(
        tmp_path / "clm.duckdb",
        start_date="2023-12-20",
        end_date="2024-02-01",
        train_days=10,
        eval_days=3,
        families=families,
        model_params={f: FAST_PARAMS[f] for f in families},
    )
    materialize(settings, ["market_data/raw_ohlcv"], "2023-12-20", AS_OF)  # + indicator warm-up
    materialize(settings, ["features/features"], "2024-01-01", AS_OF)
    selection = [f"models/{f}" for f in families]

    def stored_versions() -> dict[tuple[str, str], str]:
        store = DuckDBStore(settings.db_path)
        return {
            (f, symbol): version
            for f in families
            for symbol, version in store.query(
                f"SELECT symbol, version FROM models.{f}"
            ).itertuples(index=False)
        }

    with dg.DagsterInstance.ephemeral() as instance:
        on_cluster = dataclasses.replace(settings, ray_address=with_token.address)
        materialize(on_cluster, selection, AS_OF, AS_OF, instance)
        nodes = {
            (record.asset_materialization.partition, key.path[-1]): (
                record.asset_materialization.metadata["ray_node"].value
            )
            for key in (dg.AssetKey(["models", f]) for f in families)
            for record in instance.fetch_materializations(key, limit=10).records
        }
    assert len(nodes) == 4 and len(set(nodes.values())) == 2, nodes  # both nodes fitted
    fitted_on_cluster = stored_versions()

    materialize(settings, selection, AS_OF, AS_OF)  # no address: fitted in this process
    assert stored_versions() == fitted_on_cluster
