"""Sensors: what starts runs when nobody presses a button."""

from __future__ import annotations

import dagster as dg


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
