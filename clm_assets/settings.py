"""Deployment settings, read once from ``CLM_*`` environment variables.

Partitions are part of the asset graph, so what they depend on (the source, its symbols,
the interval, the first date) must be known when the definitions load: environment
variables are the one input Dagster's code servers, the CLI and tests all share.

Every value is parsed strictly and checked here, before any work is done: a value read
loosely (``CLM_LONG_ONLY=on`` taken as false) or checked late (a database path that is a
directory, found after a step computed) silently changes or wastes a result. A bad value
raises :class:`SettingsError`, one line naming the variable and what it allows.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from clm_assets.models.base import ModelError
from clm_assets.models.families import FAMILIES, validate_params
from clm_assets.sources.base import UnsupportedIntervalError
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import StorageError, check_writable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("sample", "synthetic", "exchange")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DATE_FORMAT = "%Y-%m-%d"
CLOCKS = ("local", "exchange")

_DEFAULTS = {
    "sample": {"symbols": "BTC-USD", "start": "2017-07-02", "end": "2019-01-01"},
    "synthetic": {"symbols": "BTC-USDT,ETH-USDT", "start": "2024-01-01", "end": ""},
    "exchange": {"symbols": "BTC-USDT,ETH-USDT", "start": "2024-01-01", "end": ""},
}


class SettingsError(ValueError):
    """A ``CLM_*`` setting is malformed or inconsistent; the message names it and what is
    allowed."""


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
    synthetic_signal: float | None = None
    """Strength of a planted hour-of-day drift in the synthetic source (None: none)."""
    synthetic_flip_at: str | None = None
    """When the planted drift reverses (ISO time, UTC); None: never."""
    label_horizon: int = 4
    train_days: int = 90
    eval_days: int = 14
    model_cron: str = "0 0 * * *"
    """Cadence of as-of partitions (a cron schedule, UTC): daily by default."""
    retrain_cron: str | None = None
    """When every family retrains (a cron, UTC); None: at every as-of of ``model_cron``.
    Its ticks must be as-of boundaries: a finer as-of grid lets the degradation sensor
    retrain between two scheduled retrains."""
    clock: str = "local"
    sensor_interval_s: int = 60
    """Minimum seconds between two ticks of each sensor."""
    sensors_running: bool = False
    """Sensors start running with the daemon (``make live``); else they are started in the
    UI or with ``dagster sensor start``."""
    """Whose clock says which bars have closed: ``local`` or ``exchange`` (the exchange's
    server time: a replay exchange's virtual clock, or a live exchange's own)."""
    families: tuple[str, ...] = tuple(FAMILIES)
    """The model families this deployment trains, evaluates and judges (all by default)."""
    model_seed: int = 0
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-family overrides of the defaults, e.g. ``{"nhits": {"max_steps": 300}}``."""
    ray_address: str | None = None
    """A running Ray cluster (``host:port`` of its head) that fits the models; None: the
    fits run in the Dagster step's own process. The bytes come back either way."""
    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    long_only: bool = False
    reports_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "reports")
    db_path: Path = field(default_factory=lambda: PROJECT_ROOT / "data" / "clm.duckdb")
    lock_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SettingsError(f"CLM_SOURCE={self.source!r}; choose one of {', '.join(SOURCES)}")
        try:
            interval_delta(self.interval)
        except UnsupportedIntervalError as exc:
            raise SettingsError(f"CLM_INTERVAL: {exc}") from None
        self._check_symbols()
        self._check_families()
        self._check_dates()
        self._check_clock()
        self._check_signal()
        self._check_numbers()
        _check_model_params(self.model_params)
        try:
            check_writable(Path(self.db_path))
        except StorageError as exc:
            raise SettingsError(f"CLM_DB_PATH={str(self.db_path)!r}: {exc}") from None

    def _check_symbols(self) -> None:
        for symbol in self.symbols:
            if not symbol or "," in symbol or "|" in symbol:
                raise SettingsError(
                    f"CLM_SYMBOLS: invalid symbol key {symbol!r}; keys are comma-separated, "
                    "non-empty and cannot hold ',' or '|'"
                )
        if len(set(self.symbols)) != len(self.symbols):
            raise SettingsError(f"CLM_SYMBOLS lists a symbol twice: {', '.join(self.symbols)}")

    def _check_families(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families or len(set(self.families)) != len(self.families):
            raise SettingsError(
                f"CLM_FAMILIES={','.join(self.families)!r}; allowed: a comma-separated subset "
                f"of {', '.join(FAMILIES)}, each once"
            )

    def _check_dates(self) -> None:
        start = _date("CLM_START_DATE", self.start_date)
        if self.end_date is not None:
            end = _date("CLM_END_DATE", self.end_date)
            if start >= end:
                raise SettingsError(
                    f"CLM_START_DATE={self.start_date} is not before CLM_END_DATE="
                    f"{self.end_date} (the exclusive end): no partition would exist"
                )
        elif start > datetime.now(UTC).date():
            raise SettingsError(
                f"CLM_START_DATE={self.start_date} is after today (UTC) and CLM_END_DATE "
                "is unset (partitions run up to today): no partition would exist"
            )

    def _check_numbers(self) -> None:
        at_least = {
            "CLM_LABEL_HORIZON": (self.label_horizon, 1, "bar"),
            "CLM_TRAIN_DAYS": (self.train_days, 1, "day"),
            "CLM_EVAL_DAYS": (self.eval_days, 1, "day"),
            "CLM_SENSOR_INTERVAL_S": (self.sensor_interval_s, 1, "second"),
            "CLM_EXCHANGE_RETRIES": (self.exchange_max_retries, 0, "retry"),
            "CLM_FEE_BPS": (self.fee_bps, 0, "basis point"),
            "CLM_SLIPPAGE_BPS": (self.slippage_bps, 0, "basis point"),
        }
        for name, (value, low, unit) in at_least.items():
            if not math.isfinite(value) or value < low:
                raise SettingsError(f"{name}={value!r}; allowed: a number of {unit}s >= {low}")
        if not (math.isfinite(self.lock_timeout_s) and self.lock_timeout_s > 0):
            raise SettingsError(f"CLM_LOCK_TIMEOUT_S={self.lock_timeout_s!r}; allowed: seconds > 0")

    @property
    def live(self) -> bool:
        """Partitions run up to today, and today (still filling) is one of them."""
        return self.end_date is None

    @property
    def retrain_schedule(self) -> str:
        return self.retrain_cron or self.model_cron

    def _check_signal(self) -> None:
        if self.synthetic_signal is None:
            if self.synthetic_flip_at is not None:
                raise SettingsError("CLM_SYNTHETIC_FLIP_AT needs CLM_SYNTHETIC_SIGNAL (a strength)")
            return
        if not (math.isfinite(self.synthetic_signal) and self.synthetic_signal > 0):
            raise SettingsError(
                f"CLM_SYNTHETIC_SIGNAL={self.synthetic_signal!r}; allowed: a strength > 0"
            )
        if self.synthetic_flip_at is not None:
            try:
                pd.Timestamp(self.synthetic_flip_at)
            except ValueError:
                raise SettingsError(
                    f"CLM_SYNTHETIC_FLIP_AT={self.synthetic_flip_at!r}; allowed: an ISO time"
                ) from None

    def _check_clock(self) -> None:
        if self.clock not in CLOCKS:
            raise SettingsError(f"CLM_CLOCK={self.clock!r}; choose one of {', '.join(CLOCKS)}")
        if self.clock == "exchange" and self.source != "exchange":
            raise SettingsError(
                f"CLM_CLOCK=exchange needs CLM_SOURCE=exchange (the source is {self.source})"
            )

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
            exchange_max_retries=_int(env, "CLM_EXCHANGE_RETRIES", 5),
            synthetic_seed=_int(env, "CLM_SYNTHETIC_SEED", 7),
            synthetic_signal=(
                _float(env, "CLM_SYNTHETIC_SIGNAL", 0.0)
                if env.get("CLM_SYNTHETIC_SIGNAL")
                else None
            ),
            synthetic_flip_at=env.get("CLM_SYNTHETIC_FLIP_AT") or None,
            label_horizon=_int(env, "CLM_LABEL_HORIZON", 4),
            train_days=_int(env, "CLM_TRAIN_DAYS", 90),
            eval_days=_int(env, "CLM_EVAL_DAYS", 14),
            model_cron=env.get("CLM_MODEL_CRON", "0 0 * * *"),
            retrain_cron=env.get("CLM_RETRAIN_CRON") or None,
            clock=env.get("CLM_CLOCK", "local"),
            sensor_interval_s=_int(env, "CLM_SENSOR_INTERVAL_S", 60),
            sensors_running=_bool(env, "CLM_SENSORS_RUNNING", False),
            families=tuple(
                f.strip() for f in env.get("CLM_FAMILIES", ",".join(FAMILIES)).split(",")
            ),
            model_seed=_int(env, "CLM_MODEL_SEED", 0),
            model_params=_json(env, "CLM_MODEL_PARAMS"),
            ray_address=env.get("CLM_RAY_ADDRESS") or None,
            fee_bps=_float(env, "CLM_FEE_BPS", 10.0),
            slippage_bps=_float(env, "CLM_SLIPPAGE_BPS", 0.0),
            long_only=_bool(env, "CLM_LONG_ONLY", False),
            reports_dir=Path(env.get("CLM_REPORTS_DIR", PROJECT_ROOT / "reports")),
            db_path=Path(env.get("CLM_DB_PATH", PROJECT_ROOT / "data" / "clm.duckdb")),
            lock_timeout_s=_float(env, "CLM_LOCK_TIMEOUT_S", 600.0),
        )


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    """Exactly the words below, in any case: anything else (``y``, ``2``) is a typo whose
    meaning we would have to guess."""
    if name not in env:
        return default
    word = env[name].strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(
        f"{name}={env[name]!r}; allowed: 1/0, true/false, yes/no, on/off (any case)"
    )


def _int(env: dict[str, str], name: str, default: int) -> int:
    if name not in env:
        return default
    try:
        return int(env[name].strip(), 10)
    except ValueError:
        raise SettingsError(f"{name}={env[name]!r}; allowed: a whole number") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    if name not in env:
        return default
    try:
        value = float(env[name].strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SettingsError(f"{name}={env[name]!r}; allowed: a finite number")
    return value


def _date(name: str, value: str) -> date:
    try:
        return datetime.strptime(value, DATE_FORMAT).date()
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={value!r}; allowed: a date YYYY-MM-DD (UTC)") from None


def _json(env: dict[str, str], name: str) -> Any:
    """Parsed JSON; ``_check_model_params`` checks its shape (direct construction too)."""
    text = env.get(name, "{}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{name} is not valid JSON ({exc.msg} at character {exc.pos}); allowed: an "
            'object of objects, e.g. {"xgboost": {"max_depth": 4}}'
        ) from None
    return value


def _check_model_params(params: Any) -> None:
    """A JSON object of objects keyed by family, naming only known families and parameters:
    a misspelled one would otherwise be ignored while the run looks configured."""
    if not isinstance(params, dict):
        raise SettingsError(
            "CLM_MODEL_PARAMS must be a JSON object of objects keyed by family "
            f'(e.g. {{"xgboost": {{"max_depth": 4}}}}), got {type(params).__name__}'
        )
    try:
        validate_params(params)
    except ModelError as exc:
        raise SettingsError(f"CLM_MODEL_PARAMS: {exc}") from None
