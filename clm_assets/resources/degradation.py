"""The degradation detector's settings as launchpad config, each with its
``CLM_DEGRADATION_*`` environment variable as the default (see ``resources/promotion.py``
for the same pattern). The sensor and the ``live_performance`` metadata read the same
values, so what the UI shows is what the sensor acts on."""

import os

import dagster as dg

from clm_assets.monitoring.degradation import DetectorConfig
from clm_assets.resources.env_config import from_config_or_env

ENV_PREFIX = "CLM_DEGRADATION_"
COOLDOWN_ENV = "CLM_DEGRADATION_COOLDOWN_HOURS"
DEFAULT_COOLDOWN_HOURS = 24.0


class DegradationResource(dg.ConfigurableResource):
    """CUSUM of the live record against the haircut backtest promise plus a drawdown
    floor (``clm_assets.monitoring.degradation``); ``cooldown_hours``: no second retrain
    request for a symbol within that many hours of market time of the last one."""

    haircut: float | None = None
    threshold: float | None = None
    k: float | None = None
    clip: float | None = None
    min_bars: int | None = None
    drawdown_multiple: float | None = None
    min_drawdown: float | None = None
    cooldown_hours: float | None = None

    def detector(self, env: dict[str, str] | None = None) -> DetectorConfig:
        env = dict(os.environ if env is None else env)
        return from_config_or_env(DetectorConfig, ENV_PREFIX, self, env)

    def cooldown(self, env: dict[str, str] | None = None) -> float:
        env = dict(os.environ if env is None else env)
        if self.cooldown_hours is not None:
            return float(self.cooldown_hours)
        raw = env.get(COOLDOWN_ENV, "").strip()
        try:
            hours = float(raw) if raw else DEFAULT_COOLDOWN_HOURS
        except ValueError:
            raise ValueError(f"{COOLDOWN_ENV}={raw!r} is not a number") from None
        if not hours >= 0:
            raise ValueError(f"{COOLDOWN_ENV}={raw!r}; allowed: hours >= 0")
        return hours
