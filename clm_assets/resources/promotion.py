"""Promotion gates as launchpad config, each with its ``CLM_GATE_*`` environment variable
as the default.

A field left unset (None) takes its environment variable when the run starts, else the
default of ``registry.gates.Gates`` (chosen from the power study, README "Promotion
gates"). The values used are recorded on every decision (``registry.promotions``) and on
the materialization's ``config`` (gates and costs).
"""

import os

import dagster as dg

from clm_assets.registry.gates import Gates
from clm_assets.resources.env_config import env_name as _env_name
from clm_assets.resources.env_config import from_config_or_env

ENV_PREFIX = "CLM_GATE_"


def env_name(field: str) -> str:
    return _env_name(ENV_PREFIX, field)


class PromotionResource(dg.ConfigurableResource):
    """Each family is judged by its stitched out-of-sample record over ``lookback_days``:
    long enough, a Deflated Sharpe Ratio over the families judged, drawdown and trade
    floors, a paired test against an incumbent of another family; the incumbent is retired
    when its forward record is significantly losing or too deep in drawdown."""

    lookback_days: int | None = None
    min_record_days: float | None = None
    min_dsr: float | None = None
    max_drawdown: float | None = None
    min_trades: int | None = None
    min_paired_psr: float | None = None
    min_paired_days: float | None = None
    min_incumbent_days: float | None = None
    retire_psr: float | None = None

    def gates(self, env: dict[str, str] | None = None) -> Gates:
        """The gates of this run: config, else ``CLM_GATE_<FIELD>``, else the default.
        A malformed variable or value is an error naming it."""
        env = dict(os.environ if env is None else env)
        try:
            return from_config_or_env(Gates, ENV_PREFIX, self, env)
        except ValueError as err:
            raise ValueError(f"promotion gates ({err})") from None
