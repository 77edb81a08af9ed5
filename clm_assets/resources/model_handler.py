"""Model bytes on the DuckDB IO manager: one row per partition with a sha256 checked on load.

The bytes and the registry row land in one transaction. A blob whose checksum no longer
matches is refused: evaluation must run the exact model that training stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from clm_assets.models.artifact import ModelArtifact, TrainedModels
from clm_assets.models.base import ModelCard
from clm_assets.registry.versions import register
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError, TableSlice, replace_in


class ModelChecksumError(StorageError):
    """Stored model bytes do not match their recorded sha256."""


class ModelHandler:
    types: tuple[type, ...] = (TrainedModels,)

    def write(self, store: DuckDBStore, table_slice: TableSlice, obj: Any) -> dict[str, Any]:
        artifacts: list[ModelArtifact] = obj.artifacts
        rows = pd.DataFrame(
            {
                "as_of": [a.as_of for a in artifacts],
                "symbol": [a.symbol for a in artifacts],
                "family": [a.family for a in artifacts],
                "version": [a.version for a in artifacts],
                "sha256": [a.sha256 for a in artifacts],
                "size_bytes": [len(a.blob) for a in artifacts],
                "code_version": [a.code_version for a in artifacts],
                "card": [a.card.to_json() for a in artifacts],
                "blob": [a.blob for a in artifacts],
            }
        )
        with store.transaction() as conn:
            replace_in(conn, table_slice, rows)
            for artifact in artifacts:
                register(conn, artifact)
        return {
            "table": f"{table_slice.schema}.{table_slice.table}",
            "registry": "registry.model_versions",
        }

    def read(self, store: DuckDBStore, table_slice: TableSlice) -> TrainedModels:
        rows = store.read(table_slice, order_by=['"symbol"', '"as_of"'])
        artifacts = []
        for row in rows.itertuples(index=False):
            blob = bytes(row.blob)
            if hashlib.sha256(blob).hexdigest() != row.sha256:
                raise ModelChecksumError(
                    f"{row.family} model for {row.symbol} as of {row.as_of:%Y-%m-%d %H:%M} failed "
                    f"its sha256 check (stored {row.sha256[:12]}…): the bytes were altered; "
                    "re-materialize the model partition"
                )
            artifacts.append(
                ModelArtifact(
                    family=row.family,
                    symbol=row.symbol,
                    as_of=row.as_of,
                    blob=blob,
                    card=ModelCard.from_json(row.card),
                    code_version=row.code_version,
                )
            )
        if not artifacts:
            raise StorageError(f"no stored models in {table_slice.qualified} for this partition")
        return TrainedModels(artifacts)
