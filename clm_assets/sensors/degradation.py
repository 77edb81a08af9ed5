"""``performance_degradation``: retrain every family when the production model's paper
record has degraded against what its backtest promised.

Each tick reads the stored ``monitoring.live_performance`` rows of every configured symbol
(read-only, giving up after a few seconds when a writer holds the file) and runs
:func:`clm_assets.monitoring.degradation.alarms` on the current reign: a CUSUM against the
haircut backtest mean plus a drawdown floor, restarted after each alarm (hysteresis),
alarms closer than the cooldown counted once. The alarms are a function of the stored
record, so the sensor keeps no cursor and a re-evaluated tick cannot fire twice.

The newest alarm asks for the newest as-of that ended after it (the retrain then sees the
degraded bars), unless that as-of is a scheduled retrain time (``scheduled_retraining``
owns those: the two sensors never request the same as-of) or its models already exist.
Why it fired (rule, statistic, threshold, window) goes on the run's tags.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from clm_assets.monitoring.degradation import DetectorConfig, alarms
from clm_assets.monitoring.divergence import NoExpectationError, divergence
from clm_assets.partitions import DATE, as_of_bounds, model_partitions, retrain_ticks
from clm_assets.resources.degradation import DegradationResource
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors import market_now, sensor_options, tick_result
from clm_assets.sensors.freshness import LOCK_WAIT_S, newest_stored_bars
from clm_assets.sensors.retraining import (
    SELECTION,
    is_retrain_time,
    newest_ended_as_of,
    retrain_request,
)
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError

TABLE = "monitoring.live_performance"


def build_defs(settings: Settings) -> dg.Definitions:
    @dg.sensor(
        name="performance_degradation",
        **sensor_options(settings),
        asset_selection=SELECTION,
        description="Retrains every family (then evaluation and promotion) for the newest "
        "as-of after the production model's paper record fails its CUSUM test against the "
        "haircut backtest promise or its drawdown floor.",
    )
    def performance_degradation(
        context: dg.SensorEvaluationContext,
        degradation: DegradationResource,
        market_data: MarketDataResource,
    ) -> dg.SensorResult:
        now, why = market_now(market_data)
        if now is None:
            return dg.SensorResult(skip_reason=why)
        cooldown = pd.Timedelta(hours=degradation.cooldown())
        requests, reasons = degradation_tick(settings, degradation.detector(), cooldown, now)
        return tick_result(context, requests, reasons)

    return dg.Definitions(sensors=[performance_degradation])


def degradation_tick(
    settings: Settings, config: DetectorConfig, cooldown: pd.Timedelta, now: pd.Timestamp
) -> tuple[list[dg.RunRequest], list[str]]:
    """The retrain requests of one tick at ``now`` (the market's clock), and why every
    other symbol has none."""
    store = DuckDBStore(settings.db_path, lock_timeout_s=LOCK_WAIT_S, read_only=True)
    try:
        if not store.table_exists("monitoring", "live_performance"):
            return [], ["no live record yet: materialize monitoring/live_performance"]
        features = newest_stored_bars(settings, "features", "features")
        requests, reasons = [], []
        for symbol in settings.symbols:
            request, reason = _symbol_tick(settings, store, symbol, config, cooldown, now)
            if request is None:
                reasons.append(f"{symbol}: {reason}")
                continue
            last_bar = request_end(settings, request) - interval_delta(settings.interval)
            if features.get(symbol) is None or features[symbol] < last_bar:
                reasons.append(f"{symbol}: {reason}; waiting for features up to {last_bar}")
                continue
            requests.append(request)
        stale = _unconfigured(store, settings)
        if stale:
            reasons.append(f"not configured, not judged: {', '.join(stale)}")
        return requests, reasons
    except StorageError as exc:
        return [], [f"store not readable: {exc}"]


def _symbol_tick(
    settings: Settings,
    store: DuckDBStore,
    symbol: str,
    config: DetectorConfig,
    cooldown: pd.Timedelta,
    now: pd.Timestamp,
) -> tuple[dg.RunRequest | None, str]:
    rows = store.query(
        f"SELECT * FROM {TABLE} WHERE symbol = ? AND open_time < ? ORDER BY open_time",
        [symbol, now.tz_convert(None).to_pydatetime()],
    )
    if rows.empty:
        return None, "no live record"
    try:
        with store.connect() as conn:
            div = divergence(rows, conn, settings.interval, config)
        if div is None:
            return None, "flat, no champion: nothing to judge"
        found, after = alarms(div.live, div.expectation, config, cooldown)
    except (NoExpectationError, ValueError) as exc:
        return None, f"not judged: {exc}"
    if not found:
        return None, f"not degraded: {after.reason}"
    alarm = found[-1]
    assert alarm.fired_at is not None
    newest = newest_ended_as_of(settings, now, scheduled=False)
    if newest is None or newest[1] <= alarm.fired_at:
        return None, f"alarm ({alarm.reason}); waiting for an as-of that ends after it"
    as_of, as_of_end = newest
    if is_retrain_time(retrain_ticks(settings), as_of_end):
        return None, f"alarm ({alarm.reason}); as-of {as_of} is a scheduled retrain"
    if _trained(store, symbol, as_of):
        return None, f"alarm ({alarm.reason}); as-of {as_of} is already trained"
    tags = {
        "clm/trigger": "performance_degradation",
        "clm/rule": str(alarm.rule),
        "clm/statistic": f"{alarm.statistic:.6g}",
        "clm/threshold": f"{alarm.threshold:.6g}",
        "clm/window": f"{alarm.window[0].isoformat()}/{alarm.window[1].isoformat()}"
        if alarm.window
        else "",
        "clm/fired_at": alarm.fired_at.isoformat(),
        "clm/champion": div.champion,
        "clm/expectation": div.expectation.label,
    }
    return retrain_request(settings, symbol, as_of, tags), f"alarm ({alarm.reason})"


def request_end(settings: Settings, request: dg.RunRequest) -> pd.Timestamp:
    """The end of the as-of a retrain request names."""
    partitions = model_partitions(settings)
    assert request.partition_key is not None
    dims = partitions.get_partition_key_from_str(request.partition_key).keys_by_dimension
    return as_of_bounds(partitions, dims[DATE])[1]


def _trained(store: DuckDBStore, symbol: str, as_of: pd.Timestamp) -> bool:
    if not store.table_exists("registry", "model_versions"):
        return False
    rows = store.query(
        "SELECT count(*) AS n FROM registry.model_versions WHERE symbol = ? AND as_of = ?",
        [symbol, as_of.tz_convert(None).to_pydatetime()],
    )
    return int(rows["n"].iloc[0]) > 0


def _unconfigured(store: DuckDBStore, settings: Settings) -> list[str]:
    held = store.query(f"SELECT DISTINCT symbol FROM {TABLE} ORDER BY 1")["symbol"].tolist()
    return [s for s in held if s not in settings.symbols]
