"""``promotion/promoted_model``: one recorded decision per as-of × symbol.

The asset is thin: :func:`decide_partitions` (callable from a test) runs the domain's
production path (``clm_assets.promotion.scoring.decide_as_of``) and writes each decision
(``registry.promotion.apply``); the asset attaches each partition's own decision to that
partition's materialization.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from clm_assets.assets.runs import DUCKDB_POOL, run_config_record
from clm_assets.partitions import (
    AS_OF_PARTITION_EXPR,
    DATE,
    SYMBOL,
    as_of_bounds,
    as_of_window,
    model_partitions,
)
from clm_assets.promotion.scoring import Context, decide_as_of
from clm_assets.registry.decisions import DECISION_KEY, Decision
from clm_assets.registry.gates import GATE_NAMES
from clm_assets.registry.promotion import apply, incumbent_for
from clm_assets.resources.backtest import BacktestResource
from clm_assets.resources.promotion import PromotionResource
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore


def decide_partitions(
    store: DuckDBStore,
    partitions: dg.MultiPartitionsDefinition,
    keys: Sequence[str],
    ctx: Context,
) -> list[tuple[str, Decision]]:
    """Decide and record each (as-of, symbol) partition of ``keys``, in time order: an
    as-of's incumbent is the champion the earlier as-of decisions left."""
    dims = {k: partitions.get_partition_key_from_str(k).keys_by_dimension for k in keys}
    ordered = sorted(keys, key=lambda k: (dims[k][DATE], dims[k][SYMBOL]))

    def end_of(as_of: pd.Timestamp) -> pd.Timestamp:
        return as_of_window(partitions, as_of)[1]

    out = []
    for key in ordered:
        symbol = dims[key][SYMBOL]
        as_of, _ = as_of_bounds(partitions, dims[key][DATE])
        with store.connect() as conn:
            incumbent = incumbent_for(conn, symbol, as_of)
        decision = decide_as_of(store, symbol, as_of, end_of, incumbent, ctx)
        with store.connect() as conn:
            apply(conn, decision)
        out.append((key, decision))
    return out


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = model_partitions(settings)

    @dg.asset(
        key=["promotion", "promoted_model"],
        group_name="promotion",
        partitions_def=partitions,
        deps=[dg.AssetKey(["evaluation", f"backtest_{f}"]) for f in settings.families],
        io_manager_key="duckdb_io",
        pool=DUCKDB_POOL,
        metadata={"partition_expr": AS_OF_PARTITION_EXPR},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb"},
    )
    def promoted_model(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        promotion: PromotionResource,
        backtest: BacktestResource,
    ) -> dg.Output[pd.DataFrame]:
        """The champion of the symbol after this as-of. Each family is judged by its own
        out-of-sample record over the lookback (its models of earlier as-ofs, each trading
        the bars of its evaluation window, stitched): record length, Deflated Sharpe Ratio
        over the families judged, drawdown and trade floors, and a paired test against an
        incumbent of another family. The incumbent's forward record is judged too; failing
        its floor retires it. Every decision is recorded with every gate value in
        ``registry.promotions``, and attached to its own partition here.
        """
        gates, costs = promotion.gates(), backtest.costs()
        ctx = Context(gates, costs, settings.interval, settings.families)
        decided = decide_partitions(storage.store, partitions, context.partition_keys, ctx)
        config = run_config_record(settings, gates=gates.as_dict(), costs=costs.as_dict())
        for key, decision in decided:
            context.add_asset_metadata(
                {**partition_metadata(decision), "config": dg.MetadataValue.json(config)},
                partition_key=key,
            )
        return dg.Output(_typed(pd.DataFrame([_row(d) for _, d in decided])))

    return dg.Definitions(assets=[promoted_model])


def partition_metadata(decision: Decision) -> dict:
    """What the UI shows for one partition: its own decision, nothing of the others'."""
    record = decision.gate_reports.get(DECISION_KEY, {})
    return {
        "decision_id": decision.decision_id,
        "action": decision.action,
        "champion": decision.champion.label if decision.champion else "none",
        "reason": decision.reason,
        "trials": record.get("trials", "n/a"),
        "missing_families": ", ".join(record.get("missing_families", [])) or "none",
        "gates": dg.MetadataValue.md(gate_table(decision)),
    }


def _row(decision: Decision) -> dict:
    champion, previous = decision.champion, decision.previous
    record = decision.gate_reports.get(DECISION_KEY, {})
    return {
        "as_of": decision.as_of,
        "symbol": decision.symbol,
        "decision_id": decision.decision_id,
        "action": decision.action,
        "champion_family": champion.family if champion else None,
        "champion_version": champion.version if champion else None,
        "champion_as_of": champion.as_of if champion else pd.NaT,
        "previous_family": previous.family if previous else None,
        "previous_version": previous.version if previous else None,
        "missing_families": ",".join(record.get("missing_families", [])),
        "reason": decision.reason,
    }


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Explicit column types: a first decision without a champion must not create the
    table with NULL-typed columns."""
    text = [c for c in frame.columns if c not in ("as_of", "champion_as_of")]
    frame[text] = frame[text].astype("string")
    frame["champion_as_of"] = pd.to_datetime(frame["champion_as_of"], utc=True)
    return frame


def gate_table(decision: Decision) -> str:
    """Markdown: one row per candidate family, one column per gate (value and outcome)."""
    if not decision.reports:
        return "no candidates"
    head = "| family | " + " | ".join(GATE_NAMES) + " | verdict |\n|---|"
    head += "---|" * (len(GATE_NAMES) + 1)
    lines = []
    for family, report in decision.reports.items():
        cells = []
        for g in report.gates:
            value = "n/a" if g.value is None else f"{g.value:.3g}"
            cells.append(f"{'✅' if g.passed else '❌'} {value}")
        verdict = "eligible" if report.passed else "rejected"
        lines.append(f"| {family} | " + " | ".join(cells) + f" | {verdict} |")
    return head + "\n" + "\n".join(lines)
