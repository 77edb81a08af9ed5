"""Group ``evaluation``: an out-of-sample backtest per model family and partition."""

from clm_assets.assets.evaluation.assets import build_defs

__all__ = ["build_defs"]
