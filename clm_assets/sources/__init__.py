"""Market-data sources: the live exchange (ccxt), the bundled real sample, synthetic GARCH."""
