"""Group ``monitoring``: the production model paper-traded on each new bar."""

from clm_assets.assets.monitoring.assets import build_defs

__all__ = ["build_defs"]
