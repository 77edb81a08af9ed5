"""``market_data/raw_ohlcv``: one row per closed bar, per UTC day × symbol."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import day_ranges, preview
from clm_assets.partitions import market_partitions
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.settings import Settings
from clm_assets.sources.validation import ValidationReport, check_candles, validate_candles

PARTITION_EXPR = {"date": "open_time", "symbol": "symbol"}
CANDLES_VALID = "candles_valid"
NO_MISSING_BARS = "no_missing_bars"


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = market_partitions(settings)
    key = dg.AssetKey(["market_data", "raw_ohlcv"])

    @dg.asset(
        key=key,
        group_name="market_data",
        partitions_def=partitions,
        io_manager_key="duckdb_io",
        metadata={"partition_expr": PARTITION_EXPR},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                CANDLES_VALID,
                asset=key,
                blocking=True,
                description="Stored bars are unique, ordered, positive, NaN-free and "
                "OHLC-consistent; features never run on a failing partition.",
            ),
            dg.AssetCheckSpec(
                NO_MISSING_BARS,
                asset=key,
                description="Every bar of the day is present. Gaps are reported, never filled.",
            ),
        ],
    )
    def raw_ohlcv(
        context: dg.AssetExecutionContext, market_data: MarketDataResource
    ) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
        """Closed OHLCV candles of one UTC day and symbol, validated before storage.

        Bars are fetched from the configured source (exchange, bundled sample or
        synthetic), duplicates and ordering repaired, broken bars rejected; gaps are
        recorded but never filled. Re-materializing a partition replaces it.
        """
        source = market_data.build()
        frames, reports = [], []
        for symbol, ranges in day_ranges(context).items():
            for start, end in ranges:
                label = (
                    f"{source.name}:{symbol} {settings.interval} [{start:%Y-%m-%d}, {end:%Y-%m-%d})"
                )
                bars = source.fetch(symbol, settings.interval, start, end)
                clean, report = validate_candles(bars, settings.interval, start, end, label)
                clean.insert(1, "symbol", symbol)
                frames.append(clean)
                reports.append(report)
        frame = pd.concat(frames, ignore_index=True)
        total = _sum_reports(reports)
        yield dg.Output(
            frame,
            metadata={
                "source": source.name,
                "interval": settings.interval,
                "rows": len(frame),
                "first_bar": frame["open_time"].min().isoformat(),
                "last_bar": frame["open_time"].max().isoformat(),
                "repairs": total.repairs,
                **{k: v for k, v in total.as_dict().items() if k != "first_missing"},
                "first_missing_bars": ", ".join(total.first_missing) or "none",
                "preview": preview(
                    frame, ["open_time", "symbol", "open", "high", "low", "close", "volume"]
                ),
            },
        )
        violations: dict[str, int] = {}
        for _, bars in frame.groupby("symbol", sort=False):
            for name, count in check_candles(bars).items():
                violations[name] = violations.get(name, 0) + count
        yield dg.AssetCheckResult(
            check_name=CANDLES_VALID,
            passed=not any(violations.values()),
            metadata=violations,
        )
        yield dg.AssetCheckResult(
            check_name=NO_MISSING_BARS,
            passed=total.missing_bars == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_bars": total.missing_bars,
                "first_missing": ", ".join(total.first_missing) or "none",
            },
        )

    return dg.Definitions(assets=[raw_ohlcv])


def _sum_reports(reports: list[ValidationReport]) -> ValidationReport:
    total = ValidationReport(rows_in=0)
    for r in reports:
        for name in (
            "rows_in",
            "rows_out",
            "duplicates_dropped",
            "reordered_rows",
            "highs_repaired",
            "lows_repaired",
            "missing_bars",
        ):
            setattr(total, name, getattr(total, name) + getattr(r, name))
        total.first_missing += r.first_missing
    total.first_missing = total.first_missing[:5]
    return total
