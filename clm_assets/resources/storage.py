"""Direct access to the DuckDB file for assets that read explicit time windows."""

from __future__ import annotations

import dagster as dg

from clm_assets.storage.duckdb_store import DuckDBStore


class StorageResource(dg.ConfigurableResource):
    """The same DuckDB file as the IO manager; connections stay short-lived."""

    path: str
    lock_timeout_s: float = 600.0

    @property
    def store(self) -> DuckDBStore:
        return DuckDBStore(self.path, self.lock_timeout_s)
