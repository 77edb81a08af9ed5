"""Frozen config dataclasses filled from launchpad config, else ``<PREFIX><FIELD>``
environment variables, else their defaults: how the promotion gates and the degradation
detector are set without touching code, and recorded with what they decided."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def env_name(prefix: str, field: str) -> str:
    return f"{prefix}{field.upper()}"


def from_config_or_env(cls: type[T], prefix: str, configured: Any, env: dict[str, str]) -> T:
    """``cls`` with each field from ``configured`` (an object whose same-named attribute is
    not None), else the variable, else the default. A malformed variable or value is an
    error naming it."""
    values: dict = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = getattr(configured, f.name)
        if value is not None:
            values[f.name] = value
            continue
        raw = env.get(env_name(prefix, f.name))
        if raw is None or raw.strip() == "":
            continue
        kind = int if f.type in (int, "int") else float
        try:
            values[f.name] = kind(raw)
        except ValueError:
            raise ValueError(
                f"{env_name(prefix, f.name)}={raw!r} is not "
                f"{'an int' if kind is int else 'a number'}"
            ) from None
    try:
        return cls(**values)
    except ValueError as err:
        raise ValueError(f"{prefix}* or resource config: {err}") from None
