"""The DuckDB IO manager every asset stores through.

Written instead of ``dagster_duckdb.DuckDBIOManager`` because the stock one deletes a
partition and writes nothing for an empty frame, deletes and inserts outside one
transaction, inserts by column position, reads partition bounds only through
``partition_key_range`` (which fails for a subset with several key ranges) and gives up on
the file lock after ~100 s. Slices here are computed from the exact partition keys of the
step, so any subset (one key, a range, several symbols with different ranges) works.

Storage is delegated to ``clm_assets.storage.DuckDBStore``; what a Python object becomes
in DuckDB is decided by a *type handler*, so models add their own handler (bytes with a
checksum) to this same IO manager.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import dagster as dg
import pandas as pd

from clm_assets.resources.model_handler import ModelHandler
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, StorageError, TableSlice


class TypeHandler(Protocol):
    """Turns one kind of Python object into rows of a slice and back."""

    types: tuple[type, ...]

    def write(self, store: DuckDBStore, table_slice: TableSlice, obj: Any) -> dict[str, Any]: ...

    def read(self, store: DuckDBStore, table_slice: TableSlice) -> Any: ...


class FrameHandler:
    """pandas frames, replaced slice by slice, read back through Arrow."""

    types: tuple[type, ...] = (pd.DataFrame,)

    def write(self, store: DuckDBStore, table_slice: TableSlice, obj: Any) -> dict[str, Any]:
        rows = store.replace(table_slice, obj)
        return {"dagster/row_count": rows, "table": f"{table_slice.schema}.{table_slice.table}"}

    def read(self, store: DuckDBStore, table_slice: TableSlice) -> pd.DataFrame:
        order = [c.time_column for c in table_slice.cells[:1] if c.time_column]
        static = [col for col, _ in table_slice.cells[0].equals] if table_slice.cells else []
        return store.read(table_slice, order_by=[f'"{c}"' for c in (*static, *order)])


def partition_expr_for(
    asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition, metadata: Mapping[str, Any]
) -> dict[str, str]:
    """Column per partition dimension, validated up front (the stock IO manager only notices
    a missing dimension on the second write)."""
    expr = metadata.get("partition_expr")
    if expr is None:
        raise StorageError(f"{asset_key.to_user_string()} is partitioned but has no partition_expr")
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        names = [d.name for d in partitions_def.partitions_defs]
        if not isinstance(expr, Mapping) or set(expr) != set(names):
            raise StorageError(
                f"{asset_key.to_user_string()}: partition_expr must map every dimension "
                f"{names} to a column, got {expr!r}"
            )
        return dict(expr)
    if not isinstance(expr, str):
        raise StorageError(f"{asset_key.to_user_string()}: partition_expr must be a column name")
    return {"": expr}


def slice_for(
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition | None,
    partition_keys: Sequence[str],
    metadata: Mapping[str, Any],
) -> TableSlice:
    """The rows owned by ``partition_keys``: one cell per static combination and
    contiguous run of time windows, so a 365-day × 2-symbol backfill is two cells."""
    schema = asset_key.path[-2] if len(asset_key.path) > 1 else "main"
    table = asset_key.path[-1]
    if partitions_def is None:
        return TableSlice(schema, table)
    if not partition_keys:
        raise StorageError(f"{asset_key.to_user_string()}: no partitions to read or write")
    expr = partition_expr_for(asset_key, partitions_def, metadata)
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
        split = [
            dg.MultiPartitionKey(partitions_def.get_partition_key_from_str(k).keys_by_dimension)
            for k in partition_keys
        ]
        keyed = [k.keys_by_dimension for k in split]
    else:
        dims = {"": partitions_def}
        keyed = [{"": k} for k in partition_keys]
    time_dims = [n for n, d in dims.items() if isinstance(d, dg.TimeWindowPartitionsDefinition)]
    static_dims = [n for n in dims if n not in time_dims]
    time_dim = time_dims[0] if time_dims else None

    groups: dict[tuple[tuple[str, str], ...], list[tuple[pd.Timestamp, pd.Timestamp]]] = (
        defaultdict(list)
    )
    for key in keyed:
        equals = tuple((expr[n], key[n]) for n in static_dims)
        if time_dim is None:
            groups[equals] = []
            continue
        window = dims[time_dim].time_window_for_partition_key(key[time_dim])  # type: ignore[attr-defined]
        groups[equals].append((pd.Timestamp(window.start), pd.Timestamp(window.end)))

    cells: list[SliceCell] = []
    for equals, windows in groups.items():
        if time_dim is None:
            cells.append(SliceCell(equals=equals))
            continue
        for start, end in _merge(windows):
            cells.append(
                SliceCell(equals, expr[time_dim], start.tz_convert("UTC"), end.tz_convert("UTC"))
            )
    return TableSlice(schema, table, tuple(cells))


def _merge(
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    merged: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class DuckDBIOManager(dg.ConfigurableIOManager):
    """Stores every asset in one DuckDB file (``schema`` = key prefix, table = key name)."""

    path: str
    lock_timeout_s: float = 600.0

    @property
    def store(self) -> DuckDBStore:
        return DuckDBStore(self.path, self.lock_timeout_s)

    def handlers(self) -> list[TypeHandler]:
        return [FrameHandler(), ModelHandler()]

    def _handler(self, obj_type: type, what: str) -> TypeHandler:
        for handler in self.handlers():
            if obj_type is Any or any(issubclass(obj_type, t) for t in handler.types):
                return handler
        raise StorageError(f"no DuckDB type handler for {obj_type!r} ({what})")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        table_slice = slice_for(
            context.asset_key,
            context.asset_partitions_def if context.has_asset_partitions else None,
            context.asset_partition_keys if context.has_asset_partitions else [],
            context.definition_metadata or {},
        )
        metadata = self._handler(type(obj), context.asset_key.to_user_string()).write(
            self.store, table_slice, obj
        )
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None or not context.has_asset_key:
            raise StorageError("the DuckDB IO manager only loads asset inputs")
        table_slice = slice_for(
            context.asset_key,
            context.asset_partitions_def if context.has_asset_partitions else None,
            context.asset_partition_keys if context.has_asset_partitions else [],
            upstream.definition_metadata or {},
        )
        load_type = context.dagster_type.typing_type
        return self._handler(load_type, context.asset_key.to_user_string()).read(
            self.store, table_slice
        )
