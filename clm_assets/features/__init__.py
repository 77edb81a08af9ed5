"""Leakage-free TA-Lib features and forward-return labels (no Dagster imports)."""
