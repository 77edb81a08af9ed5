"""Model bytes on the DuckDB IO manager (the storage itself is ``storage/models.py``)."""

from __future__ import annotations

from typing import Any

from clm_assets.models.artifact import TrainedModels
from clm_assets.storage.duckdb_store import DuckDBStore, TableSlice
from clm_assets.storage.models import read_models, write_models


class ModelHandler:
    types: tuple[type, ...] = (TrainedModels,)

    def write(self, store: DuckDBStore, table_slice: TableSlice, obj: Any) -> dict[str, Any]:
        with store.transaction() as conn:
            write_models(conn, table_slice, obj.artifacts)
        return {
            "table": f"{table_slice.schema}.{table_slice.table}",
            "registry": "registry.model_versions",
        }

    def read(self, store: DuckDBStore, table_slice: TableSlice) -> TrainedModels:
        return TrainedModels(read_models(store, table_slice))
