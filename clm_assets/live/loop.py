"""``make live``: the whole continuous-learning loop on this machine, offline, with nobody
pressing a button.

A replay exchange (``clm_assets.live.replay``) serves a SYNTHETIC market in Binance's
format on loopback, with a virtual clock that runs ``speed`` times faster than real time.
Its hour-of-day signal is planted (learnable) and reverses at ``flip_at``. clm points at it
exactly as it would point at the live exchange (``CLM_SOURCE=exchange``,
``CLM_EXCHANGE_URL``, ``CLM_CLOCK=exchange``: the exchange's server time says which bars
have closed). A short bootstrap stores the history and promotes a first champion; then the
Dagster webserver and daemon run with the sensors on: ``data_freshness`` stores the new
bars (and paper-trades the champion on them), ``performance_degradation`` watches the
paper record, and retraining, evaluation and promotion follow when it fires.

Everything lives in one folder (``.live/`` by default), wiped at each start: the virtual
clock restarts at the same moment, so older data would be ahead of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from clm_assets.live.replay import ReplayExchange, VirtualClock, build_source
from clm_assets.settings import PROJECT_ROOT

DAY = pd.Timedelta(days=1)
SYMBOL = "BTC-USDT"
FIRST_DAY = pd.Timestamp("2024-01-01", tz="UTC")
VIRTUAL_START = pd.Timestamp("2024-02-24", tz="UTC")
FLIP_AT = pd.Timestamp("2024-02-25", tz="UTC")
MODEL_PARAMS = '{"xgboost": {"n_estimators": 100, "max_depth": 2}, '
MODEL_PARAMS += '"lightgbm": {"n_estimators": 100, "max_depth": 2}}'


@dataclass(frozen=True)
class Scenario:
    """What the replay serves and how clm is configured against it."""

    first_day: pd.Timestamp = FIRST_DAY
    virtual_start: pd.Timestamp = VIRTUAL_START
    flip_at: pd.Timestamp = FLIP_AT
    strength: float = 0.8
    speed: float = 1800.0
    """Virtual seconds per real second: 1800 serves an hour of bars every 2 s."""
    families: str = "xgboost,lightgbm"
    retrain_cron: str = "0 0 * * *"
    sensor_interval_s: int = 15
    seed: int = 7

    @property
    def label(self) -> str:
        return (
            f"SYNTHETIC market (seed {self.seed}) with a planted hour-of-day signal of "
            f"strength {self.strength:g} that reverses at {self.flip_at:%Y-%m-%d %H:%M} UTC"
        )


def start_replay(scenario: Scenario) -> ReplayExchange:
    """Not started: use it as a context manager."""
    source, coverage = build_source("synthetic", scenario.seed, scenario.strength, scenario.flip_at)
    clock = VirtualClock(scenario.virtual_start, scenario.speed)
    return ReplayExchange(source, [SYMBOL], "1h", clock, coverage)


def live_env(scenario: Scenario, api_url: str, root: Path) -> dict[str, str]:
    """The ``CLM_*`` settings of the live loop (also what the README shows)."""
    return {
        "DAGSTER_HOME": str(root / "dagster_home"),
        "CLM_SOURCE": "exchange",
        "CLM_EXCHANGE_URL": api_url,
        "CLM_CLOCK": "exchange",
        "CLM_SYMBOLS": SYMBOL,
        "CLM_START_DATE": f"{scenario.first_day:%Y-%m-%d}",
        "CLM_END_DATE": "",
        "CLM_DB_PATH": str(root / "clm.duckdb"),
        "CLM_REPORTS_DIR": str(root / "reports"),
        "CLM_FAMILIES": scenario.families,
        "CLM_MODEL_PARAMS": MODEL_PARAMS,
        "CLM_TRAIN_DAYS": "20",
        "CLM_EVAL_DAYS": "7",
        "CLM_MODEL_CRON": "0 */4 * * *",
        "CLM_RETRAIN_CRON": scenario.retrain_cron,
        "CLM_GATE_LOOKBACK_DAYS": "14",
        "CLM_GATE_MIN_RECORD_DAYS": "6",
        "CLM_SENSOR_INTERVAL_S": str(scenario.sensor_interval_s),
        "CLM_SENSORS_RUNNING": "1",
    }


def bootstrap(scenario: Scenario, instance: dg.DagsterInstance) -> pd.Timestamp:
    """History up to the replay's clock, one retrain of every family as of the day
    before it (its decision takes effect 4 hours later), and the paper record since.
    Runs in this process on the persistent instance (they show in the UI). Returns the
    as-of trained."""
    from clm_assets.definitions import build_definitions
    from clm_assets.pipeline import materialize_days
    from clm_assets.sensors.retraining import SELECTION as RETRAIN
    from clm_assets.settings import Settings

    settings = Settings.from_env()
    defs = build_definitions(settings)
    today = scenario.virtual_start.floor("D")
    data = ["market_data/raw_ohlcv", "features/features"]
    materialize_days(defs, settings, data, scenario.first_day, today - DAY, instance)
    as_of = today - 2 * DAY
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=instance,
        partition_key=f"{as_of:%Y-%m-%d-%H:%M}|{SYMBOL}",
        asset_selection=list(RETRAIN.resolve(defs.resolve_asset_graph())),
        tags={"clm/trigger": "make live bootstrap"},
    )
    materialize_days(
        defs, settings, ["monitoring/live_performance"], as_of - DAY, today - DAY, instance
    )
    return as_of


def stop_group(pgid: int) -> None:
    """What Ctrl-C would do, then firmer: the webserver, daemon and code servers share
    the process group of ``dagster dev`` and must not outlive it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        for _ in range(20):
            time.sleep(0.5)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(".live"))
    parser.add_argument("--speed", type=float, default=Scenario.speed)
    parser.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = Scenario(speed=args.speed)
    root = args.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    print(f"clm live: {scenario.label}", flush=True)
    with start_replay(scenario) as replay:
        env = live_env(scenario, replay.api_url, root)
        os.environ.update(env)
        print(f"  replay exchange {replay.api_url}, virtual clock at {replay.clock.now()}, "
              f"x{scenario.speed:g}")  # fmt: skip
        print("  bootstrap: history, a first retrain and promotion (a minute or two) ...")
        with dg.DagsterInstance.get() as instance:
            as_of = bootstrap(scenario, instance)
        print(f"  bootstrap done (as-of {as_of:%Y-%m-%d}); virtual clock at {replay.clock.now()}")
        print(f"  open http://127.0.0.1:{args.port} : Overview > Sensors, Runs, and the asset "
              "monitoring/live_performance; Ctrl-C stops everything", flush=True)  # fmt: skip
        ui = subprocess.Popen(
            [
                Path(sys.executable).with_name("dagster"),
                "dev",
                "-m",
                "clm_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
            ],
            env={**os.environ, **env},
            start_new_session=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop it the same way
        try:
            ui.wait()
        except KeyboardInterrupt:
            stop_group(ui.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
