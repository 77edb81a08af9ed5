"""``models/<family>``: a model per as-of × symbol, trained on its trailing window only."""

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import run_config_record
from clm_assets.features.schema import KEY_COLUMNS, check_label_horizon
from clm_assets.models.artifact import ModelArtifact, TrainedModels, code_version
from clm_assets.models.base import ModelError
from clm_assets.models.families import model_class
from clm_assets.models.windows import Windows, horizon_days, windows_for
from clm_assets.partitions import (
    AS_OF_PARTITION_EXPR,
    DAILY,
    DATE,
    SYMBOL,
    as_of_bounds,
    model_partitions,
    window_mapping,
)
from clm_assets.resources.storage import StorageResource
from clm_assets.resources.training import TrainingResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.slices import require_days, symbol_slice

FEATURES_KEY = dg.AssetKey(["features", "features"])
KINDS = {
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "nhits": "pytorch",
    "patchtst": "pytorch",
    "ppo": "ray",
}
DESCRIPTIONS = {
    "xgboost": "XGBoost classifier on the sign of the forward return; position = 2·P(up) − 1.",
    "lightgbm": "LightGBM classifier on the sign of the forward return; position = 2·P(up) − 1.",
    "nhits": "N-HiTS (neuralforecast) forecasting log returns over the label horizon with the "
    "features as historical inputs; position = tanh(forecast / typical move).",
    "patchtst": "PatchTST (neuralforecast) forecasting log returns over the label horizon from "
    "the return series alone; position = tanh(forecast / typical move).",
    "ppo": "PPO agent (RLlib) trading short/flat/long on the features, rewarded by position × "
    "next-bar return net of fees.",
}


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[model_asset(family, settings) for family in settings.families])


def lookback_days(settings: Settings) -> int:
    """Days of features before an as-of day that its training window can touch."""
    bar = interval_delta(settings.interval)
    return settings.train_days + horizon_days(settings.label_horizon, bar) + settings.eval_days


def model_asset(family: str, settings: Settings) -> dg.AssetsDefinition:
    partitions = model_partitions(settings)
    daily = settings.model_cron == DAILY
    # Lineage shows the exact days a daily as-of partition trains on; other cadences
    # depend on the overlapping features days (the window is read explicitly either way).
    dep = dg.AssetDep(
        FEATURES_KEY, partition_mapping=window_mapping(lookback_days(settings)) if daily else None
    )

    @dg.asset(
        key=["models", family],
        group_name="training",
        description=DESCRIPTIONS[family]
        + f" Trained on the {settings.train_days} days before an embargo and the "
        f"{settings.eval_days}-day evaluation window that end at the as-of time.",
        partitions_def=partitions,
        deps=[dep],
        io_manager_key="duckdb_io",
        metadata={"partition_expr": AS_OF_PARTITION_EXPR, "family": family},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={KINDS[family]},
        tags={"family": family},
    )
    def _train(
        context: dg.AssetExecutionContext, storage: StorageResource, training: TrainingResource
    ) -> dg.Output[TrainedModels]:
        return train_models(context, family, settings, storage, training)

    return _train


def train_models(
    context: dg.AssetExecutionContext,
    family: str,
    settings: Settings,
    storage: StorageResource,
    training: TrainingResource,
) -> dg.Output[TrainedModels]:
    """Fit one model per partition of the step on its trailing window; each partition's
    materialization carries its own card, version and settings."""
    partitions = model_partitions(settings)
    bar = interval_delta(settings.interval)
    artifacts = []
    for key in context.partition_keys:
        dims = partitions.get_partition_key_from_str(key).keys_by_dimension
        as_of, as_of_end = as_of_bounds(partitions, dims[DATE])
        wins = windows_for(
            as_of_end, settings.train_days, settings.eval_days, settings.label_horizon, bar
        )
        frame = _training_frame(storage, dims[SYMBOL], wins, key, settings.label_horizon)
        model = model_class(family)(params=training.params_for(family), seed=training.seed)
        try:
            card = model.fit(frame, settings.label_horizon)
        except ModelError as exc:
            raise ModelError(f"{family} {key}: {exc}") from exc
        artifact = ModelArtifact(
            family,
            dims[SYMBOL],
            as_of,
            model.to_bytes(),
            card,
            code_version(family),
            train_seconds=model.train_seconds,
        )
        artifacts.append(artifact)
        config = run_config_record(
            settings, training={"seed": training.seed, "params": training.params}
        )
        context.add_asset_metadata(_metadata(artifact, config), partition_key=key)
    return dg.Output(TrainedModels(artifacts))


def _training_frame(
    storage: StorageResource, symbol: str, wins: Windows, key: str, horizon: int
) -> pd.DataFrame:
    """Features of ``[train_start, train_end)`` or an error naming what is missing."""
    table = symbol_slice("features", "features", symbol, wins.train_start, wins.train_end)
    frame = storage.store.read(table, order_by=[f'"{c}"' for c in KEY_COLUMNS])
    require_days(frame, symbol, wins.train_start, wins.train_end, f"the model for {key}")
    check_label_horizon(frame, horizon, f"the model for {key}")
    if horizon >= len(frame):
        raise ModelError(
            f"{key}: the label horizon ({horizon} bars) is not shorter than the training "
            f"window ({len(frame)} bars); lengthen CLM_TRAIN_DAYS or shorten the horizon"
        )
    return frame


def _metadata(artifact: ModelArtifact, config: dict) -> dict:
    card = artifact.card
    meta: dict = {
        "version": artifact.version,
        "rows": card.rows,
        "rows_unlabeled": card.rows_unlabeled,
        "features": len(card.feature_columns),
        "training_seconds": round(artifact.train_seconds, 2),
        "model_bytes": len(artifact.blob),
        "data_hash": card.data_hash,
        "train_window": f"{card.train_start} → {card.train_end}",
        "label_horizon": card.horizon,
        "params": dg.MetadataValue.json(card.params),
        "config": dg.MetadataValue.json(config),
    }
    if card.top_features:
        top = sorted(card.top_features.items(), key=lambda kv: -kv[1])
        meta["top_features"] = dg.MetadataValue.md(
            "| feature | gain share |\n|---|---:|\n"
            + "\n".join(f"| {name} | {share:.3f} |" for name, share in top)
        )
    if card.loss_curve:
        meta["loss_curve"] = dg.MetadataValue.md(_loss_table(card.loss_curve))
        meta["final_loss"] = float(card.loss_curve[-1])
    return meta


def _loss_table(curve: list[float], points: int = 10) -> str:
    step = max(1, len(curve) // points)
    picked = list(range(0, len(curve), step))
    if picked[-1] != len(curve) - 1:
        picked.append(len(curve) - 1)
    return "| step | loss |\n|---:|---:|\n" + "\n".join(
        f"| {i + 1} | {curve[i]:.6g} |" for i in picked
    )
