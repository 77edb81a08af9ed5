"""The model families by name. Imported lazily: neuralforecast and RLlib take seconds to
import, and a code server that lists assets should not pay for them."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from clm_assets.models.base import ModelError, TradingModel, check_param_names

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


def validate_params(params: Mapping[str, Mapping[str, Any]]) -> None:
    """Check a ``{family: {param: value}}`` override mapping before any work is done.

    Raises :class:`ModelError` naming an unknown family or parameter (with the closest
    known name, if any) and what is allowed. The libraries would ignore a misspelled key
    and train with their default, while the card recorded the key as if it had been used.
    Only names are checked here; each family checks its values when it is built. Importing
    the family modules is cheap: neuralforecast and RLlib load only when a model fits.
    """
    for family, overrides in params.items():
        if family not in FAMILIES:
            close = difflib.get_close_matches(str(family), list(FAMILIES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"unknown model family {family!r}{hint}; known: {', '.join(FAMILIES)}")
        if not isinstance(overrides, Mapping):
            raise ModelError(
                f"{family}: parameters must be a mapping of name to value, got "
                f"{type(overrides).__name__}"
            )
        check_param_names(family, overrides, model_class(family).default_params())
