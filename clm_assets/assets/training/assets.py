"""``models/<family>``: a model per as-of × symbol, trained on its trailing window only."""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DUCKDB_POOL, run_config_record
from clm_assets.features.schema import KEY_COLUMNS, check_label_horizon
from clm_assets.models.artifact import ModelArtifact, TrainedModels, code_version
from clm_assets.models.base import ModelError
from clm_assets.models.fitting import FitJob, FitResult
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
    """``models/<family>`` as three steps: read the windows, fit, store.

    Only the first and last touch DuckDB, and both take a slot of the ``duckdb`` pool, so
    under the multiprocess executor the fits of several families run side by side while
    the file sees one writer at a time (queued by Dagster, not by lock retries). The fit
    step runs here, or on a Ray cluster when ``CLM_RAY_ADDRESS`` is set; either way the
    bytes come back to the store step, DuckDB's only writer.
    """
    partitions = model_partitions(settings)
    daily = settings.model_cron == DAILY
    # Lineage shows the exact days a daily as-of partition trains on; other cadences
    # depend on the overlapping features days (the window is read explicitly either way).
    features = dg.AssetIn(
        FEATURES_KEY,
        partition_mapping=window_mapping(lookback_days(settings)) if daily else None,
        dagster_type=dg.Nothing,
    )

    @dg.op(name=f"read_{family}_windows", ins={"features": dg.In(dg.Nothing)}, pool=DUCKDB_POOL)
    def read(
        context: dg.AssetExecutionContext, storage: StorageResource, training: TrainingResource
    ) -> list[FitJob]:
        return fit_jobs(context.partition_keys, family, settings, storage, training)

    @dg.op(name=f"fit_{family}")
    def fit(training: TrainingResource, jobs: list[FitJob]) -> list[FitResult]:
        return training.fit_all(jobs)

    @dg.op(name=f"store_{family}", pool=DUCKDB_POOL, out=dg.Out(io_manager_key="duckdb_io"))
    def store(
        context: dg.AssetExecutionContext, training: TrainingResource, fits: list[FitResult]
    ) -> TrainedModels:
        return stored_models(context, family, settings, training, fits)

    @dg.graph_asset(
        key=["models", family],
        group_name="training",
        description=DESCRIPTIONS[family]
        + f" Trained on the {settings.train_days} days before an embargo and the "
        f"{settings.eval_days}-day evaluation window that end at the as-of time.",
        partitions_def=partitions,
        ins={"features": features},
        metadata={"partition_expr": AS_OF_PARTITION_EXPR, "family": family},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={KINDS[family]},
        tags={"family": family},
    )
    def _train(features):
        return store(fit(read(features)))

    return _train


def fit_jobs(
    partition_keys: Sequence[str],
    family: str,
    settings: Settings,
    storage: StorageResource,
    training: TrainingResource,
) -> list[FitJob]:
    """One fit per partition of the step, each on its trailing window read from DuckDB."""
    partitions = model_partitions(settings)
    bar = interval_delta(settings.interval)
    jobs = []
    for key in partition_keys:
        dims = partitions.get_partition_key_from_str(key).keys_by_dimension
        _, as_of_end = as_of_bounds(partitions, dims[DATE])
        wins = windows_for(
            as_of_end, settings.train_days, settings.eval_days, settings.label_horizon, bar
        )
        frame = _training_frame(storage, dims[SYMBOL], wins, key, settings.label_horizon)
        params = training.params_for(family)
        label = _label(family, key)
        jobs.append(FitJob(label, family, params, training.seed, frame, settings.label_horizon))
    return jobs


def stored_models(
    context: dg.AssetExecutionContext,
    family: str,
    settings: Settings,
    training: TrainingResource,
    fits: list[FitResult],
) -> TrainedModels:
    """The fitted bytes as artifacts for the IO manager; each partition's materialization
    carries its own card, version, settings and the node that fitted it."""
    partitions = model_partitions(settings)
    config = run_config_record(
        settings,
        training={"seed": training.seed, "params": training.params, "ray": training.ray_address},
    )
    artifacts = []
    for key, fit in zip(context.partition_keys, fits, strict=True):  # the read step's order
        if fit.label != _label(family, key):
            raise ModelError(f"{family}: the fit of {fit.label!r} came back for {key!r}")
        dims = partitions.get_partition_key_from_str(key).keys_by_dimension
        as_of, _ = as_of_bounds(partitions, dims[DATE])
        artifact = ModelArtifact(
            family,
            dims[SYMBOL],
            as_of,
            fit.blob,
            fit.card,
            code_version(family),
            train_seconds=fit.train_seconds,
        )
        artifacts.append(artifact)
        meta = {**_metadata(artifact, config), "trained_on": fit.node_ip, "ray_node": fit.node}
        context.add_asset_metadata(meta, partition_key=key)
    return TrainedModels(artifacts)


def _label(family: str, key: str) -> str:
    return f"{family} {key}"


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
