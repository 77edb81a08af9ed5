"""Build the one source a deployment names. There is no fallback from one to another."""

from __future__ import annotations

import pandas as pd

from clm_assets.sources.base import MarketDataSource
from clm_assets.sources.exchange import ExchangeSource
from clm_assets.sources.sample import SampleSource
from clm_assets.sources.synthetic import PlantedSignal, SyntheticSource


def make_source(
    kind: str,
    *,
    exchange_id: str = "binance",
    exchange_url: str | None = None,
    exchange_max_retries: int = 5,
    synthetic_seed: int = 7,
    synthetic_signal: float | None = None,
    synthetic_flip_at: str | None = None,
    clock: str = "local",
) -> MarketDataSource:
    """``clock="exchange"``: the exchange's server time decides which bars have closed."""
    if kind == "exchange":
        source = ExchangeSource(exchange_id, api_url=exchange_url, max_retries=exchange_max_retries)
        if clock == "exchange":
            source.clock = source.server_time
        return source
    if kind == "sample":
        return SampleSource()
    if kind == "synthetic":
        signal = None
        if synthetic_signal is not None:
            flip = None if synthetic_flip_at is None else pd.Timestamp(synthetic_flip_at)
            signal = PlantedSignal(synthetic_signal, flip)
        return SyntheticSource(seed=synthetic_seed, signal=signal)
    raise ValueError(f"unknown source {kind!r}: choose exchange, sample or synthetic")


def source_now(source: MarketDataSource) -> pd.Timestamp:
    """Now, by the clock that decides which of the source's bars have closed."""
    if isinstance(source, ExchangeSource):
        return source.clock()
    return pd.Timestamp.now(tz="UTC")


def source_id(source: MarketDataSource) -> str:
    """What the stored bars came from, precise enough that bars of two different origins
    are never mistaken for one series: ``sample``, ``synthetic:seed=7``,
    ``exchange:binance``."""
    if isinstance(source, ExchangeSource):
        return f"exchange:{source.exchange_id}"
    if isinstance(source, SyntheticSource):
        return f"{source.name}:seed={source.params.seed}"
    return source.name
