"""What Dagster itself costs: ``bench_backfill``'s floor.

The same two asset keys as the real selection (``market_data/raw_ohlcv`` and
``features/features``), with the same partitions definition (``market_partitions`` of the
``CLM_*`` settings in the environment), the same single-run backfill policy and the same
partition mapping from features to raw bars (warm-up days before, label days after), but
bodies that do nothing: no source, no DuckDB, no IO manager (a ``MaterializeResult`` has
no output to store) and no asset check. A run of it pays process start, code loading,
run and step bookkeeping and one materialization event per partition, nothing else.

    dagster asset materialize -f benchmarks/noop_defs.py --select ... --partition-range ...
"""

from __future__ import annotations

import dagster as dg

from clm_assets.assets.features.assets import warmup_days
from clm_assets.models.windows import horizon_days
from clm_assets.partitions import market_partitions, window_mapping
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = market_partitions(settings)
    single_run = dg.BackfillPolicy.single_run()
    ahead = horizon_days(settings.label_horizon, interval_delta(settings.interval))
    mapping = window_mapping(warmup_days(settings.interval), ahead)

    @dg.asset(
        key=["market_data", "raw_ohlcv"], partitions_def=partitions, backfill_policy=single_run
    )
    def raw_ohlcv() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(
        key=["features", "features"],
        partitions_def=partitions,
        deps=[dg.AssetDep(raw_ohlcv, partition_mapping=mapping)],
        backfill_policy=single_run,
    )
    def features() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return dg.Definitions(assets=[raw_ohlcv, features])


defs = build_definitions(Settings.from_env())
