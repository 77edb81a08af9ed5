"""The model registry: every model version, its lineage and status, in DuckDB tables."""
