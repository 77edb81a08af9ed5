"""What a step covers: its partition keys grouped per symbol into contiguous day ranges.

Assets read ``context.partition_keys`` (never ``partition_key_range``) so that a run over
any subset — one key, a ranged backfill, several symbols — is handled the same way.
"""

from __future__ import annotations

from collections import defaultdict

import dagster as dg
import pandas as pd

from clm_assets.partitions import DATE, SYMBOL
from clm_assets.settings import Settings

DAY = pd.Timedelta(days=1)

DUCKDB_POOL = "duckdb"
"""The Dagster pool every step that opens the DuckDB file takes a slot of. The instance
gives it one slot (``concurrency: pools: default_limit: 1`` in ``dagster.yaml``), so steps
of concurrent runs and parallel steps of one run queue for the file in Dagster instead of
retrying its lock; steps that only compute (a fit) take no slot."""


def day_ranges(
    context: dg.AssetExecutionContext,
) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """``{symbol: [(start, end), ...]}`` with UTC day bounds, ``end`` exclusive."""
    partitions_def = context.assets_def.partitions_def
    assert isinstance(partitions_def, dg.MultiPartitionsDefinition)
    days: dict[str, list[pd.Timestamp]] = defaultdict(list)
    for key in context.partition_keys:
        dims = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        days[dims[SYMBOL]].append(pd.Timestamp(dims[DATE], tz="UTC"))
    ranges: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for symbol, starts in sorted(days.items()):
        merged: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        for day in sorted(starts):
            if merged and merged[-1][1] == day:
                merged[-1] = (merged[-1][0], day + DAY)
            else:
                merged.append((day, day + DAY))
        ranges[symbol] = merged
    return ranges


def preview(frame: pd.DataFrame, columns: list[str], rows: int = 5) -> dg.MetadataValue:
    """The last rows as a markdown table: what a person checks first in the UI."""
    tail = frame[columns].tail(rows).copy()
    return dg.MetadataValue.md(tail.to_markdown(index=False, floatfmt=".6g"))


GRAPH_SETTINGS = (
    "source", "symbols", "interval", "start_date", "end_date", "model_cron",
    "train_days", "eval_days", "label_horizon", "families", "retrain_cron",
)  # fmt: skip
"""What shapes the graph (partitions and their mappings), read once at load."""


def run_config_record(settings: Settings, **config: object) -> dict[str, object]:
    """The load-time settings and the resource config a number was made with, for the
    materialization's metadata: any number in the UI traces back to both."""
    shaped = {name: getattr(settings, name) for name in GRAPH_SETTINGS}
    shaped["symbols"] = list(settings.symbols)
    shaped["families"] = list(settings.families)
    return {"settings": shaped, **config}
