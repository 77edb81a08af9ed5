"""Sensors: what starts runs when nobody presses a button."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from clm_assets.resources.market_data import MarketDataResource
from clm_assets.settings import Settings
from clm_assets.sources.base import SourceError
from clm_assets.sources.factory import source_now

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
"""Sensor runs execute their steps in the run's process: a step process per step costs
seconds of imports each, most of a freshness run's latency, and DuckDB has one writer."""


def market_now(market_data: MarketDataResource) -> tuple[pd.Timestamp | None, str]:
    """Now by the clock that says which bars have closed (the exchange's with
    ``CLM_CLOCK=exchange``), or None and why it could not be read."""
    try:
        return source_now(market_data.build()), ""
    except SourceError as exc:
        return None, f"source clock failed: {exc}"


def sensor_options(settings: Settings) -> dict:
    """Tick interval and default status, the same for every sensor of a deployment."""
    status = dg.DefaultSensorStatus.RUNNING if settings.sensors_running else None
    return {
        "minimum_interval_seconds": settings.sensor_interval_s,
        "default_status": status or dg.DefaultSensorStatus.STOPPED,
    }


def tick_result(
    context: dg.SensorEvaluationContext, requests: list[dg.RunRequest], reasons: list[str]
) -> dg.SensorResult:
    """Requests if any, else a skip; the reasons of what was not requested go to the tick's
    log either way (a tick that requests for one symbol still says why not for another)."""
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(reasons))
    for reason in reasons:
        context.log.info(reason)
    return dg.SensorResult(run_requests=requests)
