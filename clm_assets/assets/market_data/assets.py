"""``market_data/raw_ohlcv``: one row per closed bar, per UTC day × symbol."""

from collections import defaultdict
from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DAY, DUCKDB_POOL, day_ranges, preview
from clm_assets.partitions import DATE, MARKET_PARTITION_EXPR, SYMBOL, market_partitions
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.base import SourceError
from clm_assets.sources.factory import source_id, source_now
from clm_assets.sources.intervals import interval_delta
from clm_assets.sources.validation import ValidationReport, check_candles, validate_candles
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets.storage.slices import symbol_slice

CANDLES_VALID = "candles_valid"
NO_MISSING_BARS = "no_missing_bars"
SOURCE_COLUMN = "source"
ROWS_WRITTEN = "rows_written"
"""Per-partition metadata: the rows the step stored, which the check finds back."""
SCHEMA, TABLE = "market_data", "raw_ohlcv"


class SourceMismatchError(SourceError):
    """The table holds bars of another source: mixing them would make one series of two."""


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = market_partitions(settings)
    key = dg.AssetKey(["market_data", "raw_ohlcv"])

    @dg.asset(
        key=key,
        group_name="market_data",
        partitions_def=partitions,
        io_manager_key="duckdb_io",
        pool=DUCKDB_POOL,
        metadata={"partition_expr": MARKET_PARTITION_EXPR},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                NO_MISSING_BARS,
                asset=key,
                description="Every bar of the day is present. Gaps are reported, never filled.",
            ),
        ],
    )
    def raw_ohlcv(
        context: dg.AssetExecutionContext,
        market_data: MarketDataResource,
        storage: StorageResource,
    ) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
        """Closed OHLCV candles of one UTC day and symbol, validated before storage.

        Bars are fetched from the configured source (exchange, bundled sample or
        synthetic), duplicates and ordering repaired, broken bars rejected; gaps are
        recorded but never filled. Re-materializing a partition replaces it.
        """
        yield from fetch_bars(context, settings, market_data, storage)

    @dg.asset_check(
        asset=raw_ohlcv,
        name=CANDLES_VALID,
        blocking=True,
        pool=DUCKDB_POOL,
        partitions_def=partitions,
        description="The bars STORED in DuckDB (read back) are unique, sorted, on the "
        "interval grid, inside their day, finite, positive and OHLC-consistent, and as many "
        "as the step wrote; features never run on a failing partition in the same run.",
    )
    def candles_valid(
        context: dg.AssetCheckExecutionContext, storage: StorageResource
    ) -> dg.AssetCheckResult:
        """Reads the run's partitions back from the table (one query per symbol) and checks
        each day against the row count its materialization recorded."""
        written = _rows_written(context.instance, raw_ohlcv.key, context.partition_keys)
        days: dict[str, list[pd.Timestamp]] = defaultdict(list)
        for key in context.partition_keys:
            dims = partitions.get_partition_key_from_str(key).keys_by_dimension
            days[dims[SYMBOL]].append(pd.Timestamp(dims[DATE], tz="UTC"))
        bad: dict[str, dict[str, int]] = {}
        for symbol, starts in days.items():
            stored = storage.store.read(
                symbol_slice(SCHEMA, TABLE, symbol, min(starts), max(starts) + DAY),
                order_by=["rowid"],
            )
            by_day = dict(iter(stored.groupby(stored["open_time"].dt.floor("D"), sort=False)))
            for day in starts:
                key = str(_partition_key(day, symbol))
                rows = by_day.get(day, stored.iloc[:0])
                found = check_candles(rows, settings.interval, day, day + DAY, written.get(key))
                if any(found.values()):
                    bad[key] = {k: v for k, v in found.items() if v}
        return dg.AssetCheckResult(
            passed=not bad,
            metadata={
                "partitions_checked": len(context.partition_keys),
                "partitions_failing": len(bad),
                "violations": dg.MetadataValue.json(bad),
            },
        )

    return dg.Definitions(assets=[raw_ohlcv], asset_checks=[candles_valid])


def fetch_bars(
    context: dg.AssetExecutionContext,
    settings: Settings,
    market_data: MarketDataResource,
    storage: StorageResource,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """Fetch and validate the step's days; each partition records its own bars (what the
    ``candles_valid`` check finds back), the step its validation counts (``step_*``)."""
    source = market_data.build()
    origin = source_id(source)
    refuse_other_source(storage.store, origin)
    bar = interval_delta(settings.interval)
    closed_by = source_now(source).floor(bar)  # bars opening before it have closed
    frames, reports = [], []
    for symbol, ranges in day_ranges(context).items():
        for start, day_end in ranges:
            end = min(day_end, closed_by)  # today (live) holds its closed bars only
            label = f"{source.name}:{symbol} {settings.interval} [{start:%Y-%m-%d}, {end})"
            if end <= start:
                raise SourceError(f"{label}: no bar of the day has closed yet (now {closed_by})")
            bars = source.fetch(symbol, settings.interval, start, end)
            clean, report = validate_candles(bars, settings.interval, start, end, label)
            clean.insert(1, "symbol", symbol)
            clean[SOURCE_COLUMN] = origin
            frames.append(clean)
            reports.append(report)
            for day in pd.date_range(start, day_end, freq="D", inclusive="left"):
                times = clean["open_time"][clean["open_time"].between(day, day + DAY, "left")]
                closed = max(min(day + DAY, end) - day, pd.Timedelta(0)) // bar
                context.add_asset_metadata(
                    {
                        ROWS_WRITTEN: len(times),
                        "missing_bars": closed - len(times),
                        "bars_not_closed_yet": DAY // bar - closed,
                        "first_bar": times.min().isoformat() if len(times) else "none",
                        "last_bar": times.max().isoformat() if len(times) else "none",
                    },
                    partition_key=_partition_key(day, symbol),
                )
    frame = pd.concat(frames, ignore_index=True)
    total = _sum_reports(reports)
    counts = {k: v for k, v in total.as_dict().items() if k != "first_missing"}
    yield dg.Output(
        frame,
        metadata={
            "source": origin,
            "interval": settings.interval,
            "step_partitions": len(context.partition_keys),
            "step_rows": len(frame),
            "step_repairs": total.repairs,
            **{f"step_{k}": v for k, v in counts.items()},
            "step_first_missing_bars": ", ".join(total.first_missing) or "none",
            "preview": preview(
                frame, ["open_time", "symbol", "open", "high", "low", "close", "volume"]
            ),
        },
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


def _partition_key(day: pd.Timestamp, symbol: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE: f"{day:%Y-%m-%d}", SYMBOL: symbol})


def _rows_written(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, int | None]:
    """The row count the latest materialization of each partition recorded (None when it
    recorded none: then the stored rows cannot be matched to a write and the check fails).

    Read newest first in pages until every partition is found: a backfill's check asks
    about hundreds of partitions, which one query per partition made the slowest step.
    """
    wanted, found = set(partitions), {}
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions))
    cursor = None
    while wanted - found.keys():
        page = instance.fetch_materializations(records_filter, limit=1000, cursor=cursor)
        for record in page.records:
            event = record.asset_materialization
            if event is None or event.partition in found:
                continue
            value = event.metadata.get(ROWS_WRITTEN)
            found[event.partition] = None if value is None else int(value.value)
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def refuse_other_source(store: DuckDBStore, origin: str) -> None:
    """Refuse to add bars of ``origin`` to a table that holds bars of another source.

    Checked before fetching: a deployment switched from the bundled sample to an exchange
    (or to another synthetic seed) would otherwise stitch two unrelated price series into
    one history, and every feature, model and backtest downstream would read it as one.
    """
    if not store.table_exists(SCHEMA, TABLE):
        return
    held = store.query(f'SELECT DISTINCT "{SOURCE_COLUMN}" FROM {SCHEMA}.{TABLE} ORDER BY 1')[
        SOURCE_COLUMN
    ].tolist()
    others = [h for h in held if h != origin]
    if others:
        raise SourceMismatchError(
            f"{SCHEMA}.{TABLE} in {store.path} holds bars from source {', '.join(others)}; "
            f"refusing to write bars from {origin}. Point CLM_DB_PATH at another file, or "
            "delete that table to start over with the new source."
        )


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
