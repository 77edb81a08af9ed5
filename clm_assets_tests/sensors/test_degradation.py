"""The performance_degradation sensor on the live world (a planted signal that reverses on
2024-02-25): no champion -> none; a record as promised -> none; the reversal -> one retrain
request for the newest unscheduled as-of with why it fired on the tags; once that as-of is
trained -> none again; an alarm inside the cooldown -> no second request."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pandas as pd

from clm_assets.definitions import build_definitions
from clm_assets.monitoring.degradation import DetectorConfig
from clm_assets.resources.degradation import DegradationResource
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors.degradation import degradation_tick
from clm_assets_tests.monitoring.world import FLIP, SYMBOL, LiveWorld

CONFIG = DetectorConfig(haircut=0.5, threshold=20.0, min_drawdown=0.15)
"""Tighter than the defaults (haircut 0, threshold 45): the world's record is short."""
DAY = pd.Timedelta(days=1)


def _at(world: LiveWorld, now: str, cooldown_h: float = 24.0):
    return degradation_tick(
        world.settings, CONFIG, pd.Timedelta(hours=cooldown_h), pd.Timestamp(now, tz="UTC")
    )


def test_no_champion_and_a_record_as_promised_request_nothing(live_world: LiveWorld) -> None:
    requests, reasons = _at(live_world, "2024-02-13")
    assert requests == [] and reasons == [f"{SYMBOL}: flat, no champion: nothing to judge"]
    requests, reasons = _at(live_world, f"{FLIP - DAY}")
    assert requests == []
    assert reasons[0].startswith(f"{SYMBOL}: not degraded: not fired: CUSUM")


def test_the_reversal_requests_one_retrain_with_why_on_the_tags(live_world: LiveWorld) -> None:
    settings = live_world.settings
    defs = build_definitions(settings)
    context = dg.build_sensor_context(
        instance=live_world.instance,
        definitions=defs,
        resources={
            "degradation": DegradationResource(
                haircut=CONFIG.haircut,
                threshold=CONFIG.threshold,
                min_drawdown=CONFIG.min_drawdown,
            ),
            "market_data": MarketDataResource(
                source="synthetic", synthetic_signal=0.3, synthetic_flip_at=FLIP.isoformat()
            ),
        },
    )
    tick = defs.get_sensor_def("performance_degradation").evaluate_tick(context)
    (request,) = tick.run_requests
    # the newest as-of by the wall clock is the last one (ends 2024-03-10 00:00, a Sunday:
    # not a scheduled retrain time), and its features are stored
    assert request.partition_key == f"2024-03-09-20:00|{SYMBOL}"
    assert request.run_key == f"retrain|2024-03-09-20:00|{SYMBOL}"
    tags = request.tags
    assert tags["clm/trigger"] == "performance_degradation"
    assert pd.Timestamp(tags["clm/fired_at"]) > FLIP
    assert float(tags["clm/statistic"]) > float(tags["clm/threshold"]) == CONFIG.threshold
    assert tags["clm/rule"] == "cusum" and tags["clm/champion"].startswith("xgboost since")
    # what it asked for, run as asked: afterwards that as-of is trained, nothing more
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=live_world.instance,
        partition_key=request.partition_key,
        asset_selection=[
            dg.AssetKey(["models", "xgboost"]),
            dg.AssetKey(["evaluation", "backtest_xgboost"]),
            dg.AssetKey(["promotion", "promoted_model"]),
        ],
        tags=tags,
    )
    again = defs.get_sensor_def("performance_degradation").evaluate_tick(context)
    assert again.run_requests == []
    assert "is already trained" in again.skip_message


def test_the_cooldown_counts_alarms_closer_than_it_once(live_world: LiveWorld) -> None:
    def fired_at(cooldown_h: float) -> pd.Timestamp:
        (request,), _ = _at(live_world, "2024-03-09 23:59", cooldown_h)
        assert request.partition_key == f"2024-03-09-16:00|{SYMBOL}"  # ended 20:00
        return pd.Timestamp(request.tags["clm/fired_at"])

    newest, first = fired_at(0), fired_at(24 * 30)
    assert FLIP < first < newest  # several alarms since the reversal; a month of cooldown
    # keeps only the first, whose retrain request stays the one to serve


def test_a_symbol_removed_from_config_is_not_judged_and_says_so(live_world: LiveWorld) -> None:
    settings = dataclasses.replace(live_world.settings, symbols=("ETH-USDT",))
    requests, reasons = degradation_tick(
        settings, CONFIG, pd.Timedelta(hours=24), pd.Timestamp("2024-03-09 23:59", tz="UTC")
    )
    assert requests == []
    assert reasons == ["ETH-USDT: no live record", f"not configured, not judged: {SYMBOL}"]
