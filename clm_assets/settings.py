"""Deployment settings, read once from ``CLM_*`` environment variables.

Partitions are part of the asset graph, so what they depend on (the source, its symbols,
the interval, the first date) must be known when the definitions load: environment
variables are the one input Dagster's code servers, the CLI and tests all share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clm_assets.sources.intervals import interval_delta

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("sample", "synthetic", "exchange")

_DEFAULTS = {
    "sample": {"symbols": "BTC-USD", "start": "2017-07-02", "end": "2019-01-01"},
    "synthetic": {"symbols": "BTC-USDT,ETH-USDT", "start": "2024-01-01", "end": ""},
    "exchange": {"symbols": "BTC-USDT,ETH-USDT", "start": "2024-01-01", "end": ""},
}


@dataclass(frozen=True, eq=False)
class Settings:
    source: str = "sample"
    symbols: tuple[str, ...] = ("BTC-USD",)
    interval: str = "1h"
    start_date: str = "2017-07-02"
    end_date: str | None = "2019-01-01"
    """Exclusive end of the daily partitions; ``None`` means they run up to today."""
    exchange_id: str = "binance"
    exchange_url: str | None = None
    exchange_max_retries: int = 5
    synthetic_seed: int = 7
    label_horizon: int = 4
    train_days: int = 90
    eval_days: int = 14
    model_cron: str = "0 0 * * *"
    """Cadence of as-of partitions (a cron schedule, UTC): daily by default."""
    model_seed: int = 0
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-family overrides of the defaults, e.g. ``{"nhits": {"max_steps": 300}}``."""
    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    long_only: bool = False
    reports_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "reports")
    db_path: Path = field(default_factory=lambda: PROJECT_ROOT / "data" / "clm.duckdb")
    lock_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"CLM_SOURCE={self.source!r}; choose one of {SOURCES}")
        interval_delta(self.interval)
        for symbol in self.symbols:
            if not symbol or "," in symbol or "|" in symbol:
                raise ValueError(f"invalid symbol key {symbol!r}: keys cannot hold ',' or '|'")
        if self.label_horizon < 1:
            raise ValueError("CLM_LABEL_HORIZON must be at least one bar")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        source = env.get("CLM_SOURCE", "sample")
        defaults = _DEFAULTS.get(source, _DEFAULTS["sample"])
        end = env.get("CLM_END_DATE", defaults["end"])
        return cls(
            source=source,
            symbols=tuple(
                s.strip() for s in env.get("CLM_SYMBOLS", defaults["symbols"]).split(",")
            ),
            interval=env.get("CLM_INTERVAL", "1h"),
            start_date=env.get("CLM_START_DATE", defaults["start"]),
            end_date=end or None,
            exchange_id=env.get("CLM_EXCHANGE", "binance"),
            exchange_url=env.get("CLM_EXCHANGE_URL") or None,
            exchange_max_retries=int(env.get("CLM_EXCHANGE_RETRIES", "5")),
            synthetic_seed=int(env.get("CLM_SYNTHETIC_SEED", "7")),
            label_horizon=int(env.get("CLM_LABEL_HORIZON", "4")),
            train_days=int(env.get("CLM_TRAIN_DAYS", "90")),
            eval_days=int(env.get("CLM_EVAL_DAYS", "14")),
            model_cron=env.get("CLM_MODEL_CRON", "0 0 * * *"),
            model_seed=int(env.get("CLM_MODEL_SEED", "0")),
            model_params=json.loads(env.get("CLM_MODEL_PARAMS", "{}")),
            fee_bps=float(env.get("CLM_FEE_BPS", "10")),
            slippage_bps=float(env.get("CLM_SLIPPAGE_BPS", "0")),
            long_only=env.get("CLM_LONG_ONLY", "0").lower() in ("1", "true", "yes"),
            reports_dir=Path(env.get("CLM_REPORTS_DIR", PROJECT_ROOT / "reports")),
            db_path=Path(env.get("CLM_DB_PATH", PROJECT_ROOT / "data" / "clm.duckdb")),
            lock_timeout_s=float(env.get("CLM_LOCK_TIMEOUT_S", "600")),
        )
