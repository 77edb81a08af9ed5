"""Group ``training``: one model asset per family, all from one factory."""

from clm_assets.assets.training.assets import build_defs

__all__ = ["build_defs"]
