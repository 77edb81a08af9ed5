"""DuckDB storage shared by the IO manager, the registry and the CLI (no Dagster imports)."""
