"""Run ranges of partitions through Dagster in one run per asset selection.

Used by ``clm demo``, the benchmarks and the end-to-end tests: the same code path as a
single-run backfill (the ``dagster/asset_partition_range_*`` tags), on whatever instance
is given, so the runs show up in the UI when it is the persistent one.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from clm_assets.settings import Settings


def range_tags(
    settings: Settings, first_day: pd.Timestamp, last_day: pd.Timestamp
) -> dict[str, str]:
    """Tags of a run over days ``[first_day, last_day]`` (inclusive) × every symbol."""
    symbols = settings.symbols
    return {
        "dagster/asset_partition_range_start": f"{first_day:%Y-%m-%d}|{symbols[0]}",
        "dagster/asset_partition_range_end": f"{last_day:%Y-%m-%d}|{symbols[-1]}",
    }


def materialize_days(
    defs: dg.Definitions,
    settings: Settings,
    selection: Sequence[str],
    first_day: pd.Timestamp,
    last_day: pd.Timestamp,
    instance: dg.DagsterInstance,
    log_level: str = "WARNING",
) -> dg.ExecuteInProcessResult:
    """One in-process run of ``selection`` over the days × all symbols; raises on failure."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(s) for s in selection],
        tags=range_tags(settings, first_day, last_day),
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=True,
    )
