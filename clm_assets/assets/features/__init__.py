"""Group ``features``: TA-Lib indicators and forward-return labels, free of look-ahead."""

from clm_assets.assets.features.assets import build_defs

__all__ = ["build_defs"]
