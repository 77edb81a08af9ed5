"""DuckDB IO of a features-shaped frame: our ``DuckDBStore`` against the stock Dagster
pandas type handler, the bare DuckDB → Arrow → pandas path, and plain Parquet files.

``run(rows)`` builds ``rows`` one-minute synthetic BTC-USDT bars
(``SyntheticSource(seed=7)``), turns them into the real features frame with
``compute_features`` (``open_time`` tz-aware UTC, ``symbol``, ``close``, every feature and
both labels), and moves it through DuckDB as one slice (the whole table):

* ours: ``DuckDBStore.replace`` / ``DuckDBStore.read`` (what the IO manager calls);
* stock: ``dagster_duckdb_pandas.DuckDBPandasTypeHandler.handle_output`` / ``load_input``
  with ``build_output_context`` / ``build_input_context`` and a dagster ``TableSlice``, on
  a connection opened, prepared (schema, delete of the slice) and closed the way
  ``DbIOManager`` + ``DuckDbClient`` do; the stock read is ``fetchdf``;
* bare Arrow (read only): ``con.sql("SELECT * FROM t").to_arrow_table().to_pandas()`` on
  the file ours wrote, no dtype or time-zone handling;
* Parquet: ``frame.to_parquet(path, index=False)`` / ``pd.read_parquet(path)`` (pyarrow,
  its default snappy compression), ONE file holding the whole frame (the slice all sides
  move; a per-partition layout would be one such file per day × symbol). What people use
  when they skip a database: no partition replace, no concurrent-writer lock, no SQL.

Each write goes to a fresh file; writes are best of ``write_repeats`` (3), reads best of
``read_repeats`` (5), the sides alternating in rotating order; wall clock including
connect/close, with process CPU time (DuckDB's threads included) next to it: on a shared
2-core machine the CPU times and the ratios are the steadier numbers. Every frame read back is
checked against the frame written (exact values; stock and bare timestamps are normalised
to ``datetime64[ns, UTC]`` first). Our read is then split into its steps (fetch to Arrow,
``to_pandas``, time-zone fix-up) and ``to_pandas`` into the ``symbol`` column and the rest,
so a gap to the bare path can be attributed; our write is split into its pandas side
(``_to_storage``) and a bare DuckDB ``CREATE TABLE AS`` of the same frame.
``python benchmarks/bench_io.py`` prints a table.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
from dagster._core.storage.db_io_manager import TableSlice as DagsterTableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

from clm_assets.features.indicators import compute_features
from clm_assets.sources.synthetic import SyntheticSource
from clm_assets.storage.duckdb_store import DuckDBStore, TableSlice, _from_storage, _to_storage

T = TypeVar("T")
SCHEMA, TABLE = "features", "features"
START = pd.Timestamp("2022-01-01", tz="UTC")

TARGETS = [
    ("our read >= 1.5M rows/s", "ours_read_rows_per_s", ">=", 1_500_000),
    ("our read faster than stock read (ratio)", "read_speedup_vs_stock", ">=", 1.0),
    # both writes are DuckDB's insert + compression (~3 s); ours adds the atomic replace
    ("our write within 10% of stock write (ratio)", "write_speedup_vs_stock", ">=", 0.9),
    ("frames read back equal what was written", "frames_equal", "==", True),
]


def features_frame(rows: int) -> pd.DataFrame:
    """``rows`` bars of the real features frame, from synthetic 1m BTC-USDT candles."""
    bars = SyntheticSource(seed=7).fetch(
        "BTC-USDT", "1m", START, START + pd.Timedelta(minutes=rows)
    )
    return compute_features(bars, "BTC-USDT", horizon=4)


def _clock(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _clock2(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU seconds (DuckDB's threads count in the CPU time)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del out
    return wall, cpu


# -- ours -----------------------------------------------------------------------------


def ours_write(path: Path, frame: pd.DataFrame) -> None:
    DuckDBStore(path).replace(TableSlice(SCHEMA, TABLE), frame)


def ours_read(path: Path) -> pd.DataFrame:
    return DuckDBStore(path).read(TableSlice(SCHEMA, TABLE))


# -- stock dagster-duckdb-pandas --------------------------------------------------------

_STOCK_SLICE = DagsterTableSlice(table=TABLE, schema=SCHEMA)
_ASSET_KEY = dg.AssetKey([SCHEMA, TABLE])


def stock_write(path: Path, frame: pd.DataFrame) -> None:
    """``DbIOManager.handle_output`` with ``DuckDbClient``: connect, schema, delete, handler."""
    handler = DuckDBPandasTypeHandler()
    context = dg.build_output_context(asset_key=_ASSET_KEY)
    conn = duckdb.connect(str(path), config={"custom_user_agent": "dagster"})
    try:
        DuckDbClient.ensure_schema_exists(context, _STOCK_SLICE, conn)
        DuckDbClient.delete_table_slice(context, _STOCK_SLICE, conn)
        handler.handle_output(context, _STOCK_SLICE, frame, conn)
    finally:
        conn.close()


def stock_read(path: Path) -> pd.DataFrame:
    handler = DuckDBPandasTypeHandler()
    context = dg.build_input_context(asset_key=_ASSET_KEY)
    conn = duckdb.connect(str(path), config={"custom_user_agent": "dagster"})
    try:
        return handler.load_input(context, _STOCK_SLICE, conn)
    finally:
        conn.close()


# -- bare Arrow ---------------------------------------------------------------------------


def bare_arrow_read(path: Path) -> pd.DataFrame:
    conn = duckdb.connect(str(path))
    try:
        return conn.sql(f"SELECT * FROM {SCHEMA}.{TABLE}").to_arrow_table().to_pandas()
    finally:
        conn.close()


# -- Parquet ------------------------------------------------------------------------------


def parquet_write(path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(path, index=False)


def parquet_read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


# -- checks ---------------------------------------------------------------------------------


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy(deep=False)
    col = out["open_time"]
    col = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    out["open_time"] = col.astype("datetime64[ns, UTC]")
    return out


def _equal(read: pd.DataFrame, written: pd.DataFrame, normalise: bool) -> bool:
    if normalise:
        read = _normalised(read)
    try:
        pd.testing.assert_frame_equal(read, written, check_exact=True)
    except AssertionError:
        return False
    return True


# -- profile of our read ----------------------------------------------------------------------

PROFILE_STEPS = (
    ("fetch_arrow", "DuckDB scan -> Arrow (store.connect, same SQL)"),
    ("scan_only", "DuckDB scan alone: sum() of every column, no Arrow"),
    ("to_pandas", "Arrow -> pandas (Int64 mapper), all columns"),
    ("tz_fixup", "tz_localize('UTC') of open_time"),
    ("from_storage_total", "_from_storage (to_pandas + tz fix-up)"),
    ("to_pandas_without_symbol", "to_pandas without the symbol column"),
    ("to_pandas_symbol_only", "to_pandas of symbol alone (object)"),
    ("to_pandas_symbol_categorical", "symbol alone as categorical"),
    ("to_pandas_arrow_strings", "all columns, symbol as ArrowDtype(string)"),
)


def profile_our_read(path: Path, repeats: int = 5) -> dict:
    """Best-of wall and CPU times of each step of ``DuckDBStore.read`` (+ ``_from_storage``)
    and of alternatives for its pandas side."""
    store = DuckDBStore(path)
    sql = f'SELECT * FROM "{SCHEMA}"."{TABLE}" WHERE TRUE'

    def fetch() -> pa.Table:
        with store.connect() as conn:
            return conn.sql(sql, params=[]).to_arrow_table()

    table = fetch()
    sums = ", ".join(
        f'count("{f.name}")' if not pa.types.is_floating(f.type) else f'sum("{f.name}")'
        for f in table.schema
    )

    def scan_only() -> list:
        with store.connect() as conn:
            return conn.sql(f'SELECT {sums} FROM "{SCHEMA}"."{TABLE}"').fetchall()

    mapper = {pa.int64(): pd.Int64Dtype()}.get
    no_symbol = table.drop_columns(["symbol"])
    symbol_only = table.select(["symbol"])
    frame = table.to_pandas(types_mapper=mapper)
    arrow_strings = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.ArrowDtype(pa.string())}.get
    steps = {
        "fetch_arrow": fetch,
        "scan_only": scan_only,
        "to_pandas": lambda: table.to_pandas(types_mapper=mapper),
        "tz_fixup": lambda: _tz_fixup(frame.copy(deep=False), table.schema),
        "from_storage_total": lambda: _from_storage(table),
        "to_pandas_without_symbol": lambda: no_symbol.to_pandas(types_mapper=mapper),
        "to_pandas_symbol_only": lambda: symbol_only.to_pandas(),
        "to_pandas_symbol_categorical": lambda: symbol_only.to_pandas(strings_to_categorical=True),
        "to_pandas_arrow_strings": lambda: table.to_pandas(types_mapper=arrow_strings),
    }
    out: dict = {}
    for name, fn in steps.items():
        timed = [_clock2(fn) for _ in range(repeats)]
        out[name] = min(t[0] for t in timed)
        out[name + "_cpu"] = min(t[1] for t in timed)
    return out


def _tz_fixup(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The loop of ``_from_storage`` after ``to_pandas`` (copied to time it alone)."""
    for field in schema:
        if pa.types.is_timestamp(field.type):
            col = frame[field.name]
            frame[field.name] = (
                col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
            ).astype("datetime64[ns, UTC]")
    return frame


WRITE_STEPS = (
    ("to_storage", "_to_storage (tz-aware -> naive UTC, shallow copy)"),
    ("bare_create", "bare CREATE TABLE AS SELECT * FROM frame (naive)"),
    ("ours_total", "DuckDBStore.replace, all of it"),
)


def profile_our_write(tmp: Path, frame: pd.DataFrame, repeats: int = 2) -> dict:
    """Best-of wall and CPU times of the pandas side of ``replace`` and of a bare DuckDB
    insert of the same (already naive) frame into a fresh file."""
    naive = _to_storage(frame)
    counter = iter(range(10**6))

    def bare_create() -> None:
        path = tmp / f"bare_{next(counter)}.duckdb"
        conn = duckdb.connect(str(path))
        try:
            conn.register("incoming", naive)
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
            conn.execute(f"CREATE TABLE {SCHEMA}.{TABLE} AS SELECT * FROM incoming")
        finally:
            conn.close()
        path.unlink()

    def ours_total() -> None:
        path = tmp / f"ours_w_{next(counter)}.duckdb"
        ours_write(path, frame)
        path.unlink()

    steps = {"to_storage": lambda: _to_storage(frame), "bare_create": bare_create}
    steps["ours_total"] = ours_total
    out: dict = {}
    for name, fn in steps.items():
        timed = [_clock2(fn) for _ in range(repeats)]
        out[name] = min(t[0] for t in timed)
        out[name + "_cpu"] = min(t[1] for t in timed)
    return out


# -- benchmark ---------------------------------------------------------------------------------

PATHS = (
    "ours_write",
    "stock_write",
    "parquet_write",
    "ours_read",
    "stock_read",
    "bare_read",
    "parquet_read",
)


def _storage_types(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? AND column_name IN ('open_time', 'symbol')",
                [TABLE],
            ).fetchall()
        )


def run(rows: int = 1_000_000, write_repeats: int = 3, read_repeats: int = 5) -> dict:
    """Writes best of ``write_repeats`` (fresh file each), reads best of ``read_repeats``
    (writers and readers in rotating order, so none always runs first)."""
    t_build, frame = _clock(lambda: features_frame(rows))
    tmp = Path(tempfile.mkdtemp(prefix="bench_io_"))
    wall: dict[str, list[float]] = {k: [] for k in PATHS}
    cpu: dict[str, list[float]] = {k: [] for k in PATHS}
    equal = {"ours": True, "stock": True, "bare_arrow": True, "parquet": True}

    def record(name: str, timed: tuple[float, float]) -> None:
        wall[name].append(timed[0])
        cpu[name].append(timed[1])

    try:
        ours_path = stock_path = parquet_path = tmp / "none"
        for i in range(write_repeats):
            for old in tmp.glob("*_*.*"):  # a fresh file for every write
                old.unlink()
            ours_path, stock_path = tmp / f"ours_{i}.duckdb", tmp / f"stock_{i}.duckdb"
            parquet_path = tmp / f"frame_{i}.parquet"
            writers = [
                ("ours_write", lambda p=ours_path: ours_write(p, frame)),
                ("stock_write", lambda p=stock_path: stock_write(p, frame)),
                ("parquet_write", lambda p=parquet_path: parquet_write(p, frame)),
            ]
            k = i % len(writers)
            for name, fn in writers[k:] + writers[:k]:
                record(name, _clock2(fn))
        readers = [
            ("ours_read", "ours", lambda: ours_read(ours_path), False),
            ("stock_read", "stock", lambda: stock_read(stock_path), True),
            ("bare_read", "bare_arrow", lambda: bare_arrow_read(ours_path), True),
            ("parquet_read", "parquet", lambda: parquet_read(parquet_path), False),
        ]
        for _, key, fn, normalise in readers:  # correctness, untimed
            equal[key] = _equal(fn(), frame, normalise)
        for i in range(read_repeats):
            k = i % len(readers)
            for name, _, fn, _ in readers[k:] + readers[:k]:
                record(name, _clock2(fn))
        ours_types, stock_types = _storage_types(ours_path), _storage_types(stock_path)
        profile = profile_our_read(ours_path, read_repeats)
        file_mb = ours_path.stat().st_size / 2**20
        parquet_mb = parquet_path.stat().st_size / 2**20
        for old in tmp.glob("*.duckdb*"):
            old.unlink()
        write_profile = profile_our_write(tmp, frame)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    n = len(frame)
    return {
        "rows": n,
        "columns": frame.shape[1],
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
        "file_mb": file_mb,
        "parquet_mb": parquet_mb,
        "build_s": t_build,
        "write_repeats": write_repeats,
        "read_repeats": read_repeats,
        **{f"{k}_s": v for k, v in best.items()},
        **{f"{k}_cpu_s": v for k, v in best_cpu.items()},
        **{f"{k}_all_s": [round(x, 3) for x in v] for k, v in wall.items()},
        **{f"{k}_rows_per_s": n / v for k, v in best.items()},
        "write_speedup_vs_stock": best["stock_write"] / best["ours_write"],
        "read_speedup_vs_stock": best["stock_read"] / best["ours_read"],
        "read_ours_vs_bare": best["ours_read"] / best["bare_read"],
        "write_ours_vs_parquet": best["ours_write"] / best["parquet_write"],
        "read_ours_vs_parquet": best["ours_read"] / best["parquet_read"],
        "write_speedup_vs_stock_cpu": best_cpu["stock_write"] / best_cpu["ours_write"],
        "read_speedup_vs_stock_cpu": best_cpu["stock_read"] / best_cpu["ours_read"],
        "read_ours_vs_bare_cpu": best_cpu["ours_read"] / best_cpu["bare_read"],
        "write_ours_vs_parquet_cpu": best_cpu["ours_write"] / best_cpu["parquet_write"],
        "read_ours_vs_parquet_cpu": best_cpu["ours_read"] / best_cpu["parquet_read"],
        "equal_ours": equal["ours"],
        "equal_stock": equal["stock"],
        "equal_bare_arrow": equal["bare_arrow"],
        "equal_parquet": equal["parquet"],
        "frames_equal": all(equal.values()),
        "ours_storage_types": ours_types,
        "stock_storage_types": stock_types,
        "profile": profile,
        "write_profile": write_profile,
    }


def print_table(r: dict) -> None:
    n = r["rows"]
    print(
        f"DuckDB IO of the features frame: {n:,} rows x {r['columns']} columns "
        f"({r['frame_mb']:.0f} MB in pandas, {r['file_mb']:.0f} MB in DuckDB, "
        f"{r['parquet_mb']:.0f} MB in Parquet); writes best of "
        f"{r['write_repeats']} (fresh file each), reads best of {r['read_repeats']}"
    )
    print(f"{'path':<44}{'wall s':>8}{'cpu s':>8}{'rows/s (wall)':>15}{'equal':>7}")
    rows = [
        ("write  ours  DuckDBStore.replace", "ours_write", r["equal_ours"]),
        ("write  stock DuckDBPandasTypeHandler", "stock_write", r["equal_stock"]),
        ("write  Parquet to_parquet (one file)", "parquet_write", r["equal_parquet"]),
        ("read   ours  DuckDBStore.read", "ours_read", r["equal_ours"]),
        ("read   stock DuckDBPandasTypeHandler", "stock_read", r["equal_stock"]),
        ("read   bare  to_arrow_table().to_pandas()", "bare_read", r["equal_bare_arrow"]),
        ("read   Parquet read_parquet (one file)", "parquet_read", r["equal_parquet"]),
    ]
    for label, key, eq in rows:
        print(
            f"{label:<44}{r[key + '_s']:>8.3f}{r[key + '_cpu_s']:>8.3f}"
            f"{r[key + '_rows_per_s']:>15,.0f}{eq!s:>7}"
        )
    print(
        f"ours vs stock: write {r['write_speedup_vs_stock']:.2f}x faster "
        f"(cpu {r['write_speedup_vs_stock_cpu']:.2f}x), read {r['read_speedup_vs_stock']:.2f}x "
        f"faster (cpu {r['read_speedup_vs_stock_cpu']:.2f}x); our read takes "
        f"{r['read_ours_vs_bare']:.2f}x the bare Arrow read (cpu {r['read_ours_vs_bare_cpu']:.2f}x)"
    )
    print(
        f"ours vs Parquet: write takes {r['write_ours_vs_parquet']:.2f}x (cpu "
        f"{r['write_ours_vs_parquet_cpu']:.2f}x), read {r['read_ours_vs_parquet']:.2f}x (cpu "
        f"{r['read_ours_vs_parquet_cpu']:.2f}x) the Parquet time"
    )
    print(f"stored types: ours {r['ours_storage_types']}, stock {r['stock_storage_types']}")
    p = r["profile"]
    label = f"our read, step by step (best of {r['read_repeats']}, same file)"
    print(f"{label:<56}{'wall s':>8}{'cpu s':>8}")
    for key, label in PROFILE_STEPS:
        print(f"  {label:<54}{p[key]:>8.3f}{p[key + '_cpu']:>8.3f}")
    w = r["write_profile"]
    print(f"{'our write, step by step (best of 2, fresh files)':<56}{'wall s':>8}{'cpu s':>8}")
    for key, label in WRITE_STEPS:
        print(f"  {label:<54}{w[key]:>8.3f}{w[key + '_cpu']:>8.3f}")


if __name__ == "__main__":
    print_table(run())
