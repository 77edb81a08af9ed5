"""Promotion gates as launchpad config, each with its ``CLM_GATE_*`` environment variable
as the default.

A field left unset (None) takes its environment variable when the run starts, else the
default of ``registry.gates.Gates`` (chosen from the power study, README "Promotion
gates"). The values used are recorded on every decision (``registry.promotions``) and on
the materialization's ``config`` (gates and costs).
"""

import os
from dataclasses import fields

import dagster as dg

from clm_assets.registry.gates import Gates

ENV_PREFIX = "CLM_GATE_"


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


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
        values: dict = {}
        for f in fields(Gates):
            configured = getattr(self, f.name)
            if configured is not None:
                values[f.name] = configured
                continue
            raw = env.get(env_name(f.name))
            if raw is None or raw.strip() == "":
                continue
            kind = int if f.type in (int, "int") else float
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{env_name(f.name)}={raw!r} is not {'an int' if kind is int else 'a number'}"
                ) from None
        try:
            return Gates(**values)
        except ValueError as err:
            raise ValueError(f"promotion gates ({ENV_PREFIX}* or resource config): {err}") from None
