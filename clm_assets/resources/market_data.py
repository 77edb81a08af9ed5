"""The market-data source as a Dagster resource (config shown in the launchpad)."""

from __future__ import annotations

import dagster as dg

from clm_assets.sources.base import MarketDataSource
from clm_assets.sources.factory import make_source


class MarketDataResource(dg.ConfigurableResource):
    """Which source feeds ``raw_ohlcv``: ``exchange`` (ccxt), ``sample`` or ``synthetic``."""

    source: str = "sample"
    exchange_id: str = "binance"
    exchange_url: str | None = None
    exchange_max_retries: int = 5
    synthetic_seed: int = 7
    synthetic_signal: float | None = None
    synthetic_flip_at: str | None = None
    clock: str = "local"
    """``local`` or ``exchange``: whose clock says which bars have closed."""

    def build(self) -> MarketDataSource:
        return make_source(
            self.source,
            exchange_id=self.exchange_id,
            exchange_url=self.exchange_url,
            exchange_max_retries=self.exchange_max_retries,
            synthetic_seed=self.synthetic_seed,
            synthetic_signal=self.synthetic_signal,
            synthetic_flip_at=self.synthetic_flip_at,
            clock=self.clock,
        )
