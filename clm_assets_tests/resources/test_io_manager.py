"""The DuckDB IO manager under real Dagster runs: what a step writes and loads is exactly the
rows of its partition keys, however they are cut (one key, a range, a mapped window)."""

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clm_assets.partitions import window_mapping
from clm_assets.resources.duckdb_io_manager import DuckDBIOManager, slice_for
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, StorageError, TableSlice

SYMBOLS = ["AAA-USD", "BBB-USD"]
PARTS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(
            start_date="2024-01-01", end_date="2024-01-11", timezone="UTC"
        ),
        "symbol": dg.StaticPartitionsDefinition(SYMBOLS),
    }
)
EXPR = {"date": "open_time", "symbol": "symbol"}
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2024-01-01|AAA-USD",
    "dagster/asset_partition_range_end": "2024-01-05|BBB-USD",
}
DAYS_1_TO_5 = [f"2024-01-0{d}" for d in range(1, 6)]


def key(day: str, symbol: str) -> str:
    return str(dg.MultiPartitionKey({"date": day, "symbol": symbol}))


def day_bars(day: str, symbol: str) -> pd.DataFrame:
    """24 hourly bars whose values are a pure function of (symbol, time)."""
    times = pd.date_range(day, periods=24, freq="h", tz="UTC")
    base = 100.0 * (1 + SYMBOLS.index(symbol))
    return pd.DataFrame(
        {
            "open_time": times,
            "symbol": symbol,
            "close": base + (times - pd.Timestamp("2024-01-01", tz="UTC")).total_seconds() / 3600,
            "trades": pd.array(np.arange(24) + 7, dtype="Int64"),
        }
    )


@dg.asset(
    key_prefix=["market"],
    partitions_def=PARTS,
    metadata={"partition_expr": EXPR},
    io_manager_key="duckdb_io",
)
def bars(context: dg.AssetExecutionContext) -> pd.DataFrame:
    frames = []
    for k in context.partition_keys:
        dims = PARTS.get_partition_key_from_str(k).keys_by_dimension
        frames.append(day_bars(dims["date"], dims["symbol"]))
    return pd.concat(frames, ignore_index=True)


LOADED: dict[str, pd.DataFrame] = {}


@dg.asset(
    key_prefix=["market"],
    partitions_def=PARTS,
    metadata={"partition_expr": EXPR},
    io_manager_key="duckdb_io",
    ins={"bars": dg.AssetIn(key=bars.key, partition_mapping=window_mapping(2))},
)
def window_summary(context: dg.AssetExecutionContext, bars: pd.DataFrame) -> pd.DataFrame:
    LOADED[context.partition_key] = bars
    dims = PARTS.get_partition_key_from_str(context.partition_key).keys_by_dimension
    return pd.DataFrame(
        {
            "open_time": [pd.Timestamp(dims["date"], tz="UTC")],
            "symbol": [dims["symbol"]],
            "rows_loaded": [len(bars)],
        }
    )


@dg.asset(
    partitions_def=PARTS,
    metadata={"partition_expr": {"date": "open_time"}},  # forgets the symbol dimension
    io_manager_key="duckdb_io",
)
def half_keyed(context: dg.AssetExecutionContext) -> pd.DataFrame:
    dims = PARTS.get_partition_key_from_str(context.partition_key).keys_by_dimension
    return day_bars(dims["date"], dims["symbol"])


def materialize(assets, path: Path, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources={"duckdb_io": DuckDBIOManager(path=str(path))},
        instance=dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def stored(path: Path, table: str = "bars", schema: str = "market") -> pd.DataFrame:
    return DuckDBStore(path).read(TableSlice(schema, table), order_by=['"symbol"', '"open_time"'])


# -- real runs ----------------------------------------------------------------------------


def test_a_ranged_run_stores_what_one_run_per_partition_stores(tmp_path: Path) -> None:
    one_by_one, ranged = tmp_path / "single.duckdb", tmp_path / "ranged.duckdb"
    for day in DAYS_1_TO_5:
        for symbol in SYMBOLS:
            assert materialize([bars], one_by_one, partition_key=key(day, symbol)).success
    result = materialize([bars], ranged, tags=RANGE_TAGS)
    assert result.success
    assert {e.partition for e in result.get_asset_materialization_events()} == {
        key(d, s) for d in DAYS_1_TO_5 for s in SYMBOLS
    }

    expected = pd.concat([day_bars(d, s) for s in SYMBOLS for d in DAYS_1_TO_5], ignore_index=True)
    pd.testing.assert_frame_equal(stored(one_by_one), expected)
    pd.testing.assert_frame_equal(stored(ranged), stored(one_by_one))

    # Re-running one partition inside the ranged table replaces it, nothing more.
    assert materialize([bars], ranged, partition_key=key("2024-01-03", "BBB-USD")).success
    pd.testing.assert_frame_equal(stored(ranged), expected)


def test_a_mapped_window_loads_exactly_the_upstream_days_of_its_symbol(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    assert materialize([bars], path, tags=RANGE_TAGS).success
    LOADED.clear()
    for day in ("2024-01-04", "2024-01-01", "2024-01-06"):
        result = materialize(
            [window_summary, bars],
            path,
            selection=[window_summary.key],
            partition_key=key(day, "BBB-USD"),
        )
        assert result.success

    def upstream(days: list[str]) -> pd.DataFrame:
        return pd.concat([day_bars(d, "BBB-USD") for d in days], ignore_index=True)

    # Days d-2 .. d of the same symbol, in time order, nothing of the other symbol.
    window = ["2024-01-02", "2024-01-03", "2024-01-04"]
    pd.testing.assert_frame_equal(LOADED[key("2024-01-04", "BBB-USD")], upstream(window))
    # Before the first partition the window is cut at what exists.
    pd.testing.assert_frame_equal(LOADED[key("2024-01-01", "BBB-USD")], upstream(["2024-01-01"]))
    # Upstream day 6 was never materialized: it silently loads nothing (the FACTS trap).
    pd.testing.assert_frame_equal(LOADED[key("2024-01-06", "BBB-USD")], upstream(DAYS_1_TO_5[3:]))

    summary = stored(path, "window_summary")
    assert summary["rows_loaded"].tolist() == [24, 72, 48]


def test_partition_expr_missing_a_dimension_fails_on_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "bad.duckdb"
    with pytest.raises(StorageError, match=r"partition_expr must map every dimension") as err:
        materialize([half_keyed], path, partition_key=key("2024-01-01", "AAA-USD"))
    assert "symbol" in str(err.value) and "half_keyed" in str(err.value)
    assert not DuckDBStore(path).table_exists("main", "half_keyed")  # nothing was written


# -- slice_for ----------------------------------------------------------------------------


def cell(symbol: str, start: str, end: str) -> SliceCell:
    return SliceCell(
        (("symbol", symbol),),
        "open_time",
        pd.Timestamp(start, tz="UTC"),
        pd.Timestamp(end, tz="UTC"),
    )


def test_slice_for_merges_contiguous_days_per_symbol_and_splits_gaps() -> None:
    keys = [
        key("2024-01-03", "AAA-USD"),
        key("2024-01-01", "AAA-USD"),
        key("2024-01-02", "AAA-USD"),
        key("2024-01-05", "AAA-USD"),  # 01-04 missing: a separate cell
        key("2024-01-04", "BBB-USD"),
        key("2024-01-02", "BBB-USD"),
        key("2024-01-03", "BBB-USD"),
    ]
    got = slice_for(dg.AssetKey(["market", "bars"]), PARTS, keys, {"partition_expr": EXPR})
    assert (got.schema, got.table) == ("market", "bars")
    assert set(got.cells) == {
        cell("AAA-USD", "2024-01-01", "2024-01-04"),
        cell("AAA-USD", "2024-01-05", "2024-01-06"),
        cell("BBB-USD", "2024-01-02", "2024-01-05"),
    }
    assert len(got.cells) == 3


def test_slice_for_refuses_an_incomplete_partition_expr_and_an_empty_subset() -> None:
    with pytest.raises(StorageError, match="every dimension"):
        slice_for(
            dg.AssetKey("x"),
            PARTS,
            [key("2024-01-01", "AAA-USD")],
            {"partition_expr": {"symbol": "symbol"}},
        )
    with pytest.raises(StorageError, match="no partitions"):
        slice_for(dg.AssetKey("x"), PARTS, [], {"partition_expr": EXPR})


ALL_DAYS = pd.date_range("2024-01-01", "2024-01-10", freq="D", tz="UTC")
OFFSETS = [
    pd.Timedelta(0),
    pd.Timedelta(hours=1),
    pd.Timedelta(hours=23),
    pd.Timedelta(days=1) - pd.Timedelta(1, "ns"),
]


def every_bar() -> pd.DataFrame:
    """Bars at the edges of every day, a day either side of the definition, and a third
    symbol the partitions do not know."""
    days = pd.date_range("2023-12-31", "2024-01-11", freq="D", tz="UTC")
    rows = [(day + off, sym) for day in days for off in OFFSETS for sym in [*SYMBOLS, "CCC-USD"]]
    return pd.DataFrame(rows, columns=["open_time", "symbol"])


BARS = every_bar()
KEYS = st.sets(
    st.tuples(
        st.sampled_from([d.strftime("%Y-%m-%d") for d in ALL_DAYS]), st.sampled_from(SYMBOLS)
    ),
    min_size=1,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset=KEYS)
def test_slice_mask_and_sql_select_exactly_the_subset(subset: set[tuple[str, str]]) -> None:
    table_slice = slice_for(
        dg.AssetKey(["market", "bars"]),
        PARTS,
        [key(day, sym) for day, sym in subset],
        {"partition_expr": EXPR},
    )
    member = np.array(
        [
            (t.strftime("%Y-%m-%d"), s) in subset
            for t, s in zip(BARS["open_time"], BARS["symbol"], strict=True)
        ]
    )
    np.testing.assert_array_equal(table_slice.mask(BARS), member)

    # The SQL predicate the store deletes and reads with selects the same rows.
    where, params = table_slice.where()
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        frame = BARS.assign(
            open_time=BARS["open_time"].dt.tz_localize(None), row=np.arange(len(BARS))
        )
        conn.register("bars", frame)
        rows = conn.execute(f"SELECT row FROM bars WHERE {where}", params).fetchall()
    assert sorted(r for (r,) in rows) == np.flatnonzero(member).tolist()
