"""Dagster resources: the DuckDB IO manager and the market-data source."""
