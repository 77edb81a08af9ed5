"""A benchmark's Dagster instances: a fresh DAGSTER_HOME over the synthetic source, and what
the instance recorded about each run in it (queue, steps, stored events), read back from the
run, step and event records so that every figure a benchmark prints about Dagster's own
cost comes from the instance."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def synthetic_env(
    tmp: Path,
    name: str,
    db: Path,
    symbols: Sequence[str],
    first: pd.Timestamp,
    days: int,
    interval: str = "1h",
) -> dict[str, str]:
    """The environment of a CLI run: a new ``DAGSTER_HOME`` (the project's dagster.yaml)
    and the synthetic source for ``symbols`` over ``days`` from ``first``, writing ``db``;
    the caller's own ``CLM_*`` settings are dropped so that they cannot change a point."""
    home = tmp / f"home_{name}"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLM_")}
    return {
        **env,
        "DAGSTER_HOME": str(home),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": ",".join(symbols),
        "CLM_INTERVAL": interval,
        "CLM_START_DATE": f"{first:%Y-%m-%d}",
        "CLM_END_DATE": f"{first + pd.Timedelta(days=days):%Y-%m-%d}",
        "CLM_DB_PATH": str(db),
    }


def ms_per_event(stamps: list[float]) -> tuple[float, float] | None:
    """Mean ms per stored event over the first and the last tenth of a burst."""
    if len(stamps) < 20:
        return None
    ts, k = sorted(stamps), len(stamps) // 10
    return 1000 * (ts[k] - ts[0]) / k, 1000 * (ts[-1] - ts[-1 - k]) / k


def run_records(home: str) -> list[dict]:
    """Per run: status, created -> start, start -> end, each step's window and duration, and
    the stored events by type and by step."""
    out = []
    with dg.DagsterInstance.from_config(home) as instance:
        for record in instance.get_run_records():
            run_id = record.dagster_run.run_id
            start, end = record.start_time, record.end_time
            steps = {
                s.step_key: {
                    "s": round(s.end_time - s.start_time, 2),
                    "from": round(s.start_time - start, 2) if start else None,
                    "to": round(s.end_time - start, 2) if start else None,
                }
                for s in instance.get_run_step_stats(run_id)
                if s.start_time and s.end_time
            }
            logs = instance.all_logs(run_id)
            by_type: dict[str, list[float]] = defaultdict(list)
            materialized: dict[str, list[float]] = defaultdict(list)
            for entry in logs:
                event = entry.dagster_event
                if event is None:
                    continue
                by_type[event.event_type_value].append(entry.timestamp)
                if event.event_type_value == "ASSET_MATERIALIZATION":
                    materialized[entry.step_key or "?"].append(entry.timestamp)
            planned = by_type.get("ASSET_MATERIALIZATION_PLANNED", [])
            out.append(
                {
                    "status": record.dagster_run.status.value,
                    "created_to_start_s": round(start - record.create_timestamp.timestamp(), 2)
                    if start
                    else None,
                    "run_s": round(end - start, 2) if start and end else None,
                    "steps": steps,
                    "events": len(logs),
                    "event_types": {
                        k: (len(v), round(max(v) - min(v), 2)) for k, v in sorted(by_type.items())
                    },
                    "planned_ms_per_event": ms_per_event(planned),
                    "materializations_by_step": {
                        step: {
                            "count": len(v),
                            "span_s": round(max(v) - min(v), 2),
                            "ms_per_event": ms_per_event(v),
                        }
                        for step, v in materialized.items()
                    },
                }
            )
    return out
