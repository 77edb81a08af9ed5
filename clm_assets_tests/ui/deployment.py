"""A filled deployment served by ``dagster dev`` on loopback, and how a test opens a page.

The instance is persistent (a temporary ``DAGSTER_HOME``), so the webserver and daemon
started beside it see what the test materialized in its own process. The code location
loads its settings from ``CLM_*`` variables, so the served settings are written out as
those variables and read back before anything starts: what the browser shows must be the
deployment the test filled, not one built from a developer's environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg
import pandas as pd

from clm_assets.definitions import build_definitions
from clm_assets.registry.evaluations import evaluation
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.monitoring.world import AS_OFS, SYMBOL, train_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

T = TypeVar("T")

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No calls home: the closed network refuses them, and Chromium would keep retrying.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
DISMISS_COMMUNITY_PROMPT = "localStorage.setItem('communityNux', JSON.stringify('1'));"
"""What the "Join the Dagster community" dialog's Skip button stores: the first page of a
new instance would otherwise open under that modal dialog."""
NEW_SYMBOL = "ETH-USDT"
"""The deployment has taken on a second symbol since it was filled: its partitions exist
and nothing has materialized them. (Missing days at the end instead would have
``data_freshness`` request them as soon as the sensors start, racing the test.)"""
AS_OF = "%Y-%m-%d-%H:%M"
"""How an as-of partition key spells its time."""
BACKFILL_DAYS = ("2024-03-07", "2024-03-08", "2024-03-09")
"""The last filled days of the first symbol, backfilled again from the UI."""
ENV_NAMES = {
    "source": "CLM_SOURCE",
    "symbols": "CLM_SYMBOLS",
    "interval": "CLM_INTERVAL",
    "start_date": "CLM_START_DATE",
    "end_date": "CLM_END_DATE",
    "exchange_id": "CLM_EXCHANGE",
    "exchange_url": "CLM_EXCHANGE_URL",
    "exchange_max_retries": "CLM_EXCHANGE_RETRIES",
    "synthetic_seed": "CLM_SYNTHETIC_SEED",
    "synthetic_signal": "CLM_SYNTHETIC_SIGNAL",
    "synthetic_flip_at": "CLM_SYNTHETIC_FLIP_AT",
    "label_horizon": "CLM_LABEL_HORIZON",
    "train_days": "CLM_TRAIN_DAYS",
    "eval_days": "CLM_EVAL_DAYS",
    "model_cron": "CLM_MODEL_CRON",
    "retrain_cron": "CLM_RETRAIN_CRON",
    "clock": "CLM_CLOCK",
    "sensor_interval_s": "CLM_SENSOR_INTERVAL_S",
    "sensors_running": "CLM_SENSORS_RUNNING",
    "families": "CLM_FAMILIES",
    "model_seed": "CLM_MODEL_SEED",
    "model_params": "CLM_MODEL_PARAMS",
    "ray_address": "CLM_RAY_ADDRESS",
    "fee_bps": "CLM_FEE_BPS",
    "slippage_bps": "CLM_SLIPPAGE_BPS",
    "long_only": "CLM_LONG_ONLY",
    "reports_dir": "CLM_REPORTS_DIR",
    "db_path": "CLM_DB_PATH",
    "lock_timeout_s": "CLM_LOCK_TIMEOUT_S",
}
"""The variable ``Settings.from_env`` reads for each field."""


@dataclass(frozen=True)
class Backtest:
    """What the registry and the instance hold for one backtest partition."""

    metrics: dict[str, Any]
    equity_png_uri: str


@dataclass(frozen=True)
class Deployment:
    port: int
    settings: Settings
    """What the code location serves: what the instance was filled with, plus a symbol."""
    instance: dg.DagsterInstance
    backtests: dict[str, Backtest]
    """By partition key, read back right after the fill."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The webserver's own answer, to check the DOM against facts it did not render."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload
        return payload["data"]


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``CLM_*`` variables a code location reads, checked by reading
    them back: a field this table misses would otherwise take its default in the webserver
    while the test filled the instance with another value."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields == set(ENV_NAMES), f"no CLM_* variable mapped for {fields - set(ENV_NAMES)}"
    env = {ENV_NAMES[name]: _env_value(getattr(settings, name)) for name in fields}
    read_back = dataclasses.asdict(Settings.from_env(env))
    assert read_back == dataclasses.asdict(settings), (read_back, settings)
    return env


def _env_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def fill(settings: Settings, instance: dg.DagsterInstance) -> None:
    """``monitoring/world.py``'s world without its paper record. No check here shows
    ``live_performance`` (20 s more to build), and without a paper record
    ``performance_degradation`` has nothing to act on when the test starts the sensors, so
    no retrain runs while the test still does."""
    train_world(settings, instance)


def stored_backtests(settings: Settings, instance: dg.DagsterInstance) -> dict[str, Backtest]:
    """Each backtest partition's metrics as the registry stored them, and its equity curve
    as its materialization carries it."""
    key = dg.AssetKey(["evaluation", "backtest_xgboost"])
    out = {}
    for as_of in AS_OFS:
        partition = f"{as_of}|{SYMBOL}"
        with DuckDBStore(settings.db_path, read_only=True).connect() as conn:
            row = evaluation(conn, "xgboost", SYMBOL, pd.to_datetime(as_of, format=AS_OF, utc=True))
        assert row is not None, f"no registry.evaluations row for {partition}"
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        event = records[0].asset_materialization
        assert event is not None
        markdown = str(event.metadata["equity_curve"].value)
        uri = re.search(r"\((data:image/png;base64,[^)]+)\)", markdown)
        assert uri is not None, markdown[:200]
        out[partition] = Backtest(row["metrics"], uri.group(1))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(proc: subprocess.Popen) -> None:
    """The webserver, daemon, code server and any run they launched share the process
    group of ``dagster dev``. The instance and its files are thrown away, so nothing needs
    a clean exit: SIGKILL at once (``dagster dev`` takes more than 5 s to honour SIGTERM)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


def find_chromium() -> str | None:
    """``$CLM_CHROMIUM`` if set (another Chromium or Chrome binary), else Debian's
    ``chromium`` on the PATH or at its usual place."""
    named = os.environ.get("CLM_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).is_file() else None)


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], root: Path, port: int) -> Iterator[subprocess.Popen]:
    """``dagster dev`` (webserver + daemon + code server) on 127.0.0.1:``port``, living in
    ``root`` and logging to ``root/dagster_dev.log``; its process group is killed on exit."""
    command = [BIN / "dagster", "dev", "-m", "clm_assets.definitions"]
    with (root / "dagster_dev.log").open("w") as log:
        proc = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _stop_group(proc)


def wait_until_served(deployment: Deployment, proc: subprocess.Popen, root: Path) -> None:
    """Until the webserver answers with every asset of the served definitions (the code
    location loads after the server starts listening)."""
    graph = build_definitions(deployment.settings).resolve_asset_graph()
    assets = len(list(graph.get_all_asset_keys()))

    def loaded() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((root / "dagster_dev.log").read_text()[-3000:])
        try:
            return len(deployment.graphql("{ assetNodes { id } }")["assetNodes"]) == assets
        except OSError:
            return False

    wait_for(loaded, 180, "the webserver to load the code location")


def open_page(browser: Browser) -> Page:
    """A fresh browser context (its own storage) at a desktop size, in UTC."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC", locale="en-US")
    context.add_init_script(DISMISS_COMMUNITY_PROMPT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page
