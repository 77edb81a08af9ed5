"""DuckDBStore on real files: a replace is exact, atomic, by name, time-zone proof and waits
for the file lock; every refusal leaves the stored data as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clm_assets.storage.duckdb_store import (
    DuckDBStore,
    SliceCell,
    StorageError,
    TableSlice,
    check_writable,
)

ROOT = Path(__file__).resolve().parents[2]
DAY1 = pd.Timestamp("2024-01-01", tz="UTC")
DAY2 = pd.Timestamp("2024-01-02", tz="UTC")
WHOLE = TableSlice("main", "bars")
ORDER = ['"symbol"', '"open_time"']


def day_slice(symbol: str, day: pd.Timestamp) -> TableSlice:
    cell = SliceCell((("symbol", symbol),), "open_time", day, day + pd.Timedelta(days=1))
    return TableSlice("main", "bars", (cell,))


def bars(symbol: str, day: pd.Timestamp, bump: float = 0.0) -> pd.DataFrame:
    hours = range(24)
    return pd.DataFrame(
        {
            "open_time": pd.date_range(day, periods=24, freq="h"),
            "symbol": symbol,
            "close": [100.0 + h + bump for h in hours],
            "volume": [1000.0 + h for h in hours],
            "trades": pd.array([10 * h for h in hours], dtype="Int64"),
        }
    )


def read_all(store: DuckDBStore) -> pd.DataFrame:
    return store.read(WHOLE, order_by=ORDER)


def expected(*frames: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["symbol", "open_time"], kind="stable").reset_index(drop=True)


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "warehouse.duckdb", lock_timeout_s=30)


@pytest.fixture
def seeded(store: DuckDBStore) -> tuple[DuckDBStore, pd.DataFrame]:
    """Three partitions stored: AAA day 1, AAA day 2, BBB day 1."""
    frames = [bars("AAA", DAY1), bars("AAA", DAY2, bump=50), bars("BBB", DAY1, bump=70)]
    for frame in frames:
        store.replace(day_slice(frame["symbol"].iloc[0], frame["open_time"].iloc[0]), frame)
    return store, expected(*frames)


# -- replace semantics --------------------------------------------------------------------


def test_replace_is_idempotent_and_leaves_neighbours_intact(seeded) -> None:
    store, before = seeded
    new = bars("AAA", DAY1, bump=7)
    for _ in range(3):
        assert store.replace(day_slice("AAA", DAY1), new) == 24
    after = read_all(store)
    assert not after.duplicated(["symbol", "open_time"]).any()
    neighbours = ~((before["symbol"] == "AAA") & (before["open_time"] < DAY2))
    pd.testing.assert_frame_equal(after, expected(new, before[neighbours].reset_index(drop=True)))


def test_empty_frame_is_refused_and_the_partition_survives(seeded) -> None:
    store, before = seeded
    with pytest.raises(StorageError, match="empty frame"):
        store.replace(day_slice("AAA", DAY1), bars("AAA", DAY1).iloc[:0])
    pd.testing.assert_frame_equal(read_all(store), before)


@pytest.mark.parametrize(
    ("open_time", "symbol"),
    [
        (DAY2, "AAA"),  # the next day's first bar: exactly the exclusive end of the slice
        (DAY1, "BBB"),  # the right day, another symbol's partition
        (DAY1 - pd.Timedelta(1, "ns"), "AAA"),  # one nanosecond before the slice
    ],
    ids=["at-end-bound", "other-symbol", "before-start"],
)
def test_rows_outside_the_slice_are_refused(seeded, open_time: pd.Timestamp, symbol: str) -> None:
    store, before = seeded
    frame = bars("AAA", DAY1, bump=1)
    row = frame.iloc[[0]].copy()
    row["open_time"], row["symbol"] = open_time, symbol
    with pytest.raises(StorageError, match="1 rows lie outside"):
        store.replace(day_slice("AAA", DAY1), pd.concat([frame, row], ignore_index=True))
    pd.testing.assert_frame_equal(read_all(store), before)


def test_reordered_columns_land_by_name(seeded) -> None:
    store, _ = seeded
    new = bars("AAA", DAY1, bump=3)
    store.replace(day_slice("AAA", DAY1), new[list(reversed(new.columns))])
    got = store.read(day_slice("AAA", DAY1), order_by=ORDER)
    assert list(got.columns) == list(new.columns)  # the table keeps its column order
    pd.testing.assert_frame_equal(got, new)  # and every value sits in its own column


@pytest.mark.parametrize("change", ["new column", "missing column"])
def test_schema_change_is_a_clear_error(seeded, change: str) -> None:
    store, before = seeded
    frame = bars("AAA", DAY1, bump=1)
    frame = frame.assign(spread=0.1) if change == "new column" else frame.drop(columns="volume")
    with pytest.raises(StorageError, match="schema change") as err:
        store.replace(day_slice("AAA", DAY1), frame)
    assert ("spread" if change == "new column" else "volume") in str(err.value)
    pd.testing.assert_frame_equal(read_all(store), before)


def test_varchar_time_column_in_an_existing_table_is_refused(store: DuckDBStore) -> None:
    with duckdb.connect(str(store.path)) as conn:
        conn.execute(
            "CREATE TABLE main.bars (open_time VARCHAR, symbol VARCHAR, close DOUBLE, "
            "volume DOUBLE, trades BIGINT)"
        )
        conn.execute("INSERT INTO main.bars VALUES ('2024-01-01 05:00:00', 'AAA', 1, 2, 3)")
    with pytest.raises(StorageError, match=r"open_time is VARCHAR, not a TIMESTAMP"):
        store.replace(day_slice("AAA", DAY1), bars("AAA", DAY1))
    with duckdb.connect(str(store.path)) as conn:
        assert conn.execute("SELECT * FROM main.bars").fetchall() == [
            ("2024-01-01 05:00:00", "AAA", 1.0, 2.0, 3)
        ]


# -- types and time zones -----------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_tz_aware_frames_round_trip_as_utc(store: DuckDBStore, zone: str) -> None:
    frame = bars("AAA", DAY1)
    local = frame.assign(open_time=frame["open_time"].dt.tz_convert(zone))
    store.replace(day_slice("AAA", DAY1), local)
    got = store.read(day_slice("AAA", DAY1), order_by=ORDER)
    assert str(got["open_time"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(got, frame)
    assert (got["open_time"] == local["open_time"]).all()  # the same instants


def test_naive_frames_are_taken_as_utc(seeded) -> None:
    store, before = seeded
    new = bars("AAA", DAY1, bump=9)
    store.replace(
        day_slice("AAA", DAY1), new.assign(open_time=new["open_time"].dt.tz_localize(None))
    )
    pd.testing.assert_frame_equal(store.read(day_slice("AAA", DAY1), order_by=ORDER), new)
    assert len(read_all(store)) == len(before)


NEW_YORK_WRITER = """
    import json, sys, time
    time.tzset()
    assert time.localtime(0).tm_hour == 19, time.tzname  # 1970-01-01 00:00 UTC is 19:00 EST
    import pandas as pd
    from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice

    store = DuckDBStore(sys.argv[1])

    def day_slice(day):
        start = pd.Timestamp(day, tz="UTC")
        cell = SliceCell((("symbol", "AAA"),), "open_time", start, start + pd.Timedelta(days=1))
        return TableSlice("main", "bars", (cell,))

    def bars(day, bump):
        times = pd.date_range(day, periods=24, freq="h", tz="UTC")
        return pd.DataFrame({"open_time": times, "symbol": "AAA", "close": times.hour + bump})

    # 2024-03-10 is the day New York springs forward: local days are 23 hours long there.
    for day in ("2024-03-09", "2024-03-10", "2024-03-11"):
        store.replace(day_slice(day), bars(day, 0.0))
    store.replace(day_slice("2024-03-10"), bars("2024-03-10", 100.0))  # the same day again
    local = bars("2024-03-10", 200.0)
    local["open_time"] = local["open_time"].dt.tz_convert("America/New_York")
    store.replace(day_slice("2024-03-10"), local)  # and once more, tz-aware in local time
    naive = bars("2024-03-11", 300.0)
    naive["open_time"] = naive["open_time"].dt.tz_localize(None)
    store.replace(day_slice("2024-03-11"), naive)
    day = store.read(day_slice("2024-03-10"), order_by=['"open_time"'])
    print(json.dumps({"times": [t.isoformat() for t in day["open_time"]],
                      "close": day["close"].tolist()}))
"""


def test_a_non_utc_process_writes_exact_days_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "tz.duckdb"
    out = json.loads(run_python(NEW_YORK_WRITER, str(path), env={"TZ": "America/New_York"}))
    hours = pd.date_range("2024-03-10", periods=24, freq="h", tz="UTC")
    # Read back inside the New York process: the slice is exactly the UTC day.
    assert out["times"] == [t.isoformat() for t in hours]
    assert out["close"] == [h + 200.0 for h in range(24)]

    stored = DuckDBStore(path).read(WHOLE, order_by=ORDER)
    assert len(stored) == 72
    assert not stored["open_time"].duplicated().any()
    assert stored["open_time"].tolist() == list(
        pd.date_range("2024-03-09", periods=72, freq="h", tz="UTC")
    )
    by_day = stored.groupby(stored["open_time"].dt.strftime("%Y-%m-%d"))["close"]
    assert by_day.size().to_dict() == {"2024-03-09": 24, "2024-03-10": 24, "2024-03-11": 24}
    # The 23:00 UTC bars (evening in New York) stayed in their own UTC day.
    last = stored.set_index("open_time")["close"]
    assert last[pd.Timestamp("2024-03-09 23:00", tz="UTC")] == 23.0
    assert last[pd.Timestamp("2024-03-10 23:00", tz="UTC")] == 223.0
    assert last[pd.Timestamp("2024-03-11 23:00", tz="UTC")] == 323.0


def test_nullable_int64_round_trips(store: DuckDBStore) -> None:
    frame = bars("AAA", DAY1)
    frame["trades"] = pd.array([None if h % 5 == 0 else h for h in range(24)], dtype="Int64")
    store.replace(day_slice("AAA", DAY1), frame)
    got = store.read(day_slice("AAA", DAY1), order_by=ORDER)
    assert str(got["trades"].dtype) == "Int64"
    pd.testing.assert_series_equal(got["trades"], frame["trades"])
    assert int(got["trades"].isna().sum()) == 5


# -- atomicity ----------------------------------------------------------------------------


def test_a_failing_insert_rolls_back_the_delete(seeded) -> None:
    store, before = seeded
    bad = bars("AAA", DAY1).astype({"close": object})
    bad["close"] = "not a price"  # VARCHAR cannot be cast into the DOUBLE column
    with pytest.raises(duckdb.ConversionException):
        store.replace(day_slice("AAA", DAY1), bad)
    pd.testing.assert_frame_equal(read_all(store), before)  # the DELETE was undone
    # and the file is usable afterwards (no dangling transaction or lock)
    store.replace(day_slice("AAA", DAY1), bars("AAA", DAY1, bump=1))
    assert len(read_all(store)) == len(before)


# -- locking and concurrency --------------------------------------------------------------

HOLDER = """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    conn.close()
"""


def hold_lock(path: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(path), mode, str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_a_write_waits_for_another_process_connection(seeded, mode: str) -> None:
    store, _ = seeded
    holder = hold_lock(store.path, mode, 2.0)
    try:
        t0 = time.monotonic()
        store.replace(day_slice("AAA", DAY1), bars("AAA", DAY1, bump=5))
        elapsed = time.monotonic() - t0
    finally:
        assert holder.wait(timeout=30) == 0
    assert elapsed >= 1.5, f"the write did not wait for the {mode} holder ({elapsed:.2f} s)"
    got = store.read(day_slice("AAA", DAY1), order_by=ORDER)
    pd.testing.assert_frame_equal(got, bars("AAA", DAY1, bump=5))


def test_lock_timeout_is_a_storage_error_naming_the_file(seeded) -> None:
    store, before = seeded
    impatient = DuckDBStore(store.path, lock_timeout_s=0.5)
    holder = hold_lock(store.path, "rw", 3.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="could not open") as err:
            impatient.replace(day_slice("AAA", DAY1), bars("AAA", DAY1, bump=5))
        elapsed = time.monotonic() - t0
    finally:
        assert holder.wait(timeout=30) == 0
    assert str(store.path) in str(err.value)
    assert elapsed < 2.5, f"gave up after {elapsed:.2f} s, not after ~0.5 s"
    pd.testing.assert_frame_equal(read_all(store), before)


WRITER = """
    import sys, time
    import pandas as pd
    from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice

    path, symbol, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = DuckDBStore(path, lock_timeout_s=60)
    while time.time() < go:  # start together with the other writer
        time.sleep(0.005)
    for day in pd.date_range("2024-01-01", periods=20, freq="D", tz="UTC"):
        cell = SliceCell((("symbol", symbol),), "open_time", day, day + pd.Timedelta(days=1))
        times = pd.date_range(day, periods=24, freq="h")
        frame = pd.DataFrame({"open_time": times, "symbol": symbol, "close": 1.0})
        store.replace(TableSlice("main", "bars", (cell,)), frame)
"""


def test_two_processes_writing_20_partitions_each_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    go = str(time.time() + 1.5)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(path), symbol, go],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for symbol in ("AAA", "BBB")
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    stored = DuckDBStore(path).read(WHOLE, order_by=ORDER)
    assert len(stored) == 2 * 20 * 24
    assert not stored.duplicated(["symbol", "open_time"]).any()
    per_partition = stored.groupby(["symbol", stored["open_time"].dt.date]).size()
    assert len(per_partition) == 40 and (per_partition == 24).all()


CREATOR = """
    import sys
    from clm_assets.storage.duckdb_store import DuckDBStore

    for path in sys.argv[1:]:
        with DuckDBStore(path).connect() as conn:
            conn.execute("SELECT 1")
"""


def test_a_new_database_file_appears_complete_to_other_processes(tmp_path: Path) -> None:
    """DuckDB creates a file, then writes its header; a process opening the path in between
    found an empty file and failed ("not a valid DuckDB database file": two writers starting
    on a new file in a .ci/run). Watched from here as another process creates 30 new files:
    each path must first appear with a whole header (DuckDB's 12 KiB), never empty."""
    paths = [str(tmp_path / f"new{i}.duckdb") for i in range(30)]
    creator = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CREATOR), *paths], cwd=ROOT, stderr=subprocess.PIPE
    )
    first_seen = []
    for path in paths:
        while True:
            try:
                first_seen.append(os.stat(path).st_size)
                break
            except FileNotFoundError:
                assert creator.poll() is None or os.path.exists(path), creator.stderr.read()
    assert creator.wait(timeout=60) == 0
    assert min(first_seen) >= 12288, f"first sizes seen: {first_seen}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)


# --------------------------------------------------------------------------- unusable paths


def refused_at_once(path: Path) -> str:
    """Opening ``path`` fails at once (no lock wait) with an error naming it."""
    patient = DuckDBStore(path, lock_timeout_s=600)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as err:
        patient.query("SELECT 1")
    assert time.monotonic() - t0 < 5.0
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "600" not in message and "lock" not in message.lower()
    return message


def test_a_directory_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    assert "directory" in refused_at_once(tmp_path).lower()


def test_a_path_under_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    parent = tmp_path / "not-a-folder"
    parent.write_text("x")
    refused_at_once(parent / "clm.duckdb")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_folder_where_nothing_can_be_created_is_refused_at_once() -> None:
    """sysfs refuses new files even to root, for whom chmod changes nothing."""
    assert "denied" in refused_at_once(Path("/sys/kernel/clm.duckdb")).lower()


def test_a_file_that_is_not_a_duckdb_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.duckdb"
    path.write_bytes(os.urandom(8192))
    assert "not a valid DuckDB" in refused_at_once(path)


def test_a_truncated_database_is_refused_naming_it(seeded) -> None:
    store, _ = seeded
    whole = store.path.read_bytes()
    store.path.write_bytes(whole[: len(whole) // 2])
    refused_at_once(store.path)


@pytest.mark.parametrize("make", ["directory", "under-a-file", "sysfs"])
def test_check_writable_refuses_what_duckdb_could_not_write(tmp_path: Path, make: str) -> None:
    if make == "directory":
        path = tmp_path
    elif make == "under-a-file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "deeper" / "clm.duckdb"
    else:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("needs Linux sysfs")
        path = Path("/sys/kernel/clm.duckdb")
    with pytest.raises(StorageError) as err:
        check_writable(path)
    assert str(path) in str(err.value)


def test_check_writable_accepts_a_new_file_in_a_missing_folder_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "clm.duckdb"
    check_writable(path)
    assert list(tmp_path.iterdir()) == []
    store = DuckDBStore(path)
    store.replace(day_slice("AAA", DAY1), bars("AAA", DAY1))
    check_writable(path)
