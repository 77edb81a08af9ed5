"""Group ``market_data``: validated closed candles from the configured source."""

from clm_assets.assets.market_data.assets import build_defs

__all__ = ["build_defs"]
