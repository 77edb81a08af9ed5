"""The code location: every group's definitions merged, plus shared resources.

Each group package builds its own ``Definitions`` from the deployment ``Settings``; this
module only merges them, so a new group is one line here.
"""

from __future__ import annotations

import dagster as dg

from clm_assets.assets import evaluation, features, market_data, monitoring, promotion, training
from clm_assets.resources.backtest import BacktestResource
from clm_assets.resources.degradation import DegradationResource
from clm_assets.resources.duckdb_io_manager import DuckDBIOManager
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.resources.promotion import PromotionResource
from clm_assets.resources.storage import StorageResource
from clm_assets.resources.training import TrainingResource
from clm_assets.sensors import degradation, freshness, retraining
from clm_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    resources = dg.Definitions(
        resources={
            "duckdb_io": DuckDBIOManager(
                path=str(settings.db_path), lock_timeout_s=settings.lock_timeout_s
            ),
            "storage": StorageResource(
                path=str(settings.db_path), lock_timeout_s=settings.lock_timeout_s
            ),
            "promotion": PromotionResource(),
            "degradation": DegradationResource(),
            "backtest": BacktestResource(
                fee_bps=settings.fee_bps,
                slippage_bps=settings.slippage_bps,
                long_only=settings.long_only,
            ),
            "training": TrainingResource(
                seed=settings.model_seed,
                params=settings.model_params,
                ray_address=settings.ray_address,
            ),
            "market_data": MarketDataResource(
                source=settings.source,
                exchange_id=settings.exchange_id,
                exchange_url=settings.exchange_url,
                exchange_max_retries=settings.exchange_max_retries,
                synthetic_seed=settings.synthetic_seed,
                synthetic_signal=settings.synthetic_signal,
                synthetic_flip_at=settings.synthetic_flip_at,
                clock=settings.clock,
            ),
        }
    )
    return dg.Definitions.merge(
        market_data.build_defs(settings),
        features.build_defs(settings),
        training.build_defs(settings),
        evaluation.build_defs(settings),
        promotion.build_defs(settings),
        monitoring.build_defs(settings),
        freshness.build_defs(settings),
        retraining.build_defs(settings),
        degradation.build_defs(settings),
        resources,
    )


defs = build_definitions(Settings.from_env())
