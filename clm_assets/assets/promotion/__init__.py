"""Group ``promotion``: the champion per symbol, chosen by recorded, gated decisions."""

from clm_assets.assets.promotion.assets import build_defs

__all__ = ["build_defs"]
