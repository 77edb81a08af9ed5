"""The model families by name. Imported lazily: neuralforecast and RLlib take seconds to
import, and a code server that lists assets should not pay for them."""

from __future__ import annotations

import importlib

from clm_assets.models.base import TradingModel

FAMILIES: dict[str, str] = {
    "xgboost": "clm_assets.models.gbdt:XGBoostModel",
    "lightgbm": "clm_assets.models.gbdt:LightGBMModel",
    "nhits": "clm_assets.models.neural:NHITSModel",
    "patchtst": "clm_assets.models.neural:PatchTSTModel",
    "ppo": "clm_assets.models.rl:PPOModel",
}


def model_class(family: str) -> type[TradingModel]:
    try:
        module, name = FAMILIES[family].split(":")
    except KeyError:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None
    return getattr(importlib.import_module(module), name)


def load_model(family: str, blob: bytes) -> TradingModel:
    return model_class(family).from_bytes(blob)
