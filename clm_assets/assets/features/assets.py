"""``features/features``: indicators per bar plus labels, per UTC day × symbol."""

import math

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DAY, DUCKDB_POOL, day_ranges, preview
from clm_assets.features.indicators import FEATURE_NAMES, WARMUP_BARS, compute_features
from clm_assets.features.schema import LABEL_HORIZON, LABEL_RETURN
from clm_assets.models.windows import horizon_days
from clm_assets.partitions import (
    DATE,
    MARKET_PARTITION_EXPR,
    SYMBOL,
    market_partitions,
    window_mapping,
)
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.slices import require_days


def warmup_days(interval: str) -> int:
    """Whole days of earlier bars that cover ``WARMUP_BARS`` at this interval."""
    return math.ceil(WARMUP_BARS * interval_delta(interval) / DAY)


def build_defs(settings: Settings) -> dg.Definitions:
    lookback = warmup_days(settings.interval)
    ahead = horizon_days(settings.label_horizon, interval_delta(settings.interval))

    @dg.asset(
        key=["features", "features"],
        group_name="features",
        partitions_def=market_partitions(settings),
        io_manager_key="duckdb_io",
        pool=DUCKDB_POOL,
        ins={
            "raw_ohlcv": dg.AssetIn(
                key=["market_data", "raw_ohlcv"],
                # The days a label looks ahead too; features never do.
                partition_mapping=window_mapping(lookback, ahead),
            )
        },
        metadata={"partition_expr": MARKET_PARTITION_EXPR, "feature_names": list(FEATURE_NAMES)},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "pandas"},
    )
    def features(
        context: dg.AssetExecutionContext, raw_ohlcv: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        """TA-Lib momentum, trend, volatility, volume and candle features, returns, lags
        and calendar terms for each bar of the day, plus the forward-return label and its
        sign over the configured horizon.

        Computed on the day with enough earlier days loaded for every indicator to warm
        up; a missing earlier day is an error naming it, not a silently shorter window.
        Labels of the day's last bars stay null until the next day's bars exist.
        """
        return compute_days(context, settings, raw_ohlcv)

    return dg.Definitions(assets=[features])


def compute_days(
    context: dg.AssetExecutionContext, settings: Settings, raw_ohlcv: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """Features of each day of the step on its own warm-up window; each partition records
    its own rows, pending labels and warm-up."""
    lookback = warmup_days(settings.interval)
    ahead = horizon_days(settings.label_horizon, interval_delta(settings.interval))
    first_day = pd.Timestamp(settings.start_date, tz="UTC")
    feature_cols = list(FEATURE_NAMES)
    out = []
    for symbol, ranges in day_ranges(context).items():
        bars = raw_ohlcv[raw_ohlcv["symbol"] == symbol].drop(columns="symbol")
        for start, end in ranges:
            require_days(bars, symbol, max(start - lookback * DAY, first_day), end, "features")
            for day in pd.date_range(start, end, freq="D", inclusive="left"):
                window_start = max(day - lookback * DAY, first_day)
                frame = _day_features(
                    bars,
                    day,
                    window_start,
                    day + (1 + ahead) * DAY,
                    symbol,
                    settings.label_horizon,
                )
                out.append(frame)
                warmup = (
                    f"partial: the source's data starts {first_day:%Y-%m-%d}, "
                    f"{(day - window_start) // DAY} of {lookback} days loaded"
                    if day - lookback * DAY < first_day
                    else f"complete ({lookback} days before the day)"
                )
                context.add_asset_metadata(
                    {
                        "rows": len(frame),
                        "labels_pending": int(frame[LABEL_RETURN].isna().sum()),
                        "rows_with_nan_features": int(frame[feature_cols].isna().any(axis=1).sum()),
                        "warmup": warmup,
                    },
                    partition_key=dg.MultiPartitionKey({DATE: f"{day:%Y-%m-%d}", SYMBOL: symbol}),
                )
    frame = pd.concat(out, ignore_index=True)
    frame[LABEL_HORIZON] = settings.label_horizon
    return dg.Output(
        frame,
        metadata={
            "label_horizon": settings.label_horizon,
            "feature_count": len(feature_cols),
            "warmup_bars": WARMUP_BARS,
            "step_partitions": len(context.partition_keys),
            "step_rows": len(frame),
            "preview": preview(frame, ["open_time", "symbol", *feature_cols[:4], LABEL_RETURN]),
        },
    )


def _day_features(
    bars: pd.DataFrame,
    day: pd.Timestamp,
    window_start: pd.Timestamp,
    window_end: pd.Timestamp,
    symbol: str,
    horizon: int,
) -> pd.DataFrame:
    """Features of one day computed on exactly its own window ``[window_start, window_end)``
    (the warm-up before the day, the days its labels look into after it).

    Every partition sees the same window however runs are grouped, so a backfill stores
    bit-identical values to partitions materialized one by one (TA-Lib's running sums
    would otherwise differ in the last digits with an earlier start).
    """
    times = pd.DatetimeIndex(bars["open_time"])
    lo, hi = times.searchsorted([window_start, window_end])
    frame = compute_features(bars.iloc[lo:hi].reset_index(drop=True), symbol, horizon)
    first, last = pd.DatetimeIndex(frame["open_time"]).searchsorted([day, day + DAY])
    return frame.iloc[first:last]
