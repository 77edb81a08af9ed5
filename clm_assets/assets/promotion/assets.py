"""``promotion/promoted_model``: one recorded decision per as-of × symbol."""

from dataclasses import replace

import dagster as dg
import pandas as pd

from clm_assets.assets.promotion.scoring import score_candidates
from clm_assets.models.families import FAMILIES
from clm_assets.models.windows import windows_for
from clm_assets.partitions import DATE, SYMBOL, as_of_window, model_partitions
from clm_assets.registry.decisions import Decision, decide
from clm_assets.registry.promotion import apply, incumbent_for
from clm_assets.resources.promotion import PromotionResource
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta

PARTITION_EXPR = {DATE: "as_of", SYMBOL: "symbol"}


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = model_partitions(settings)
    bar = interval_delta(settings.interval)

    @dg.asset(
        key=["promotion", "promoted_model"],
        group_name="promotion",
        partitions_def=partitions,
        deps=[dg.AssetKey(["evaluation", f"backtest_{f}"]) for f in FAMILIES],
        io_manager_key="duckdb_io",
        metadata={"partition_expr": PARTITION_EXPR},
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb"},
    )
    def promoted_model(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        promotion: PromotionResource,
    ) -> dg.Output[pd.DataFrame]:
        """The champion of the symbol after this as-of: every candidate family's backtest
        gated (trades, Sharpe, drawdown, profit factor, PSR vs flat and vs the incumbent
        re-scored on the same window); the best eligible one replaces the incumbent, and
        when none passes the incumbent stays. Each decision is recorded with every gate
        value in ``registry.promotions``.

        Partitions are decided in time order: an as-of's incumbent is the champion that
        earlier as-of decisions left.
        """
        store, gates = storage.store, promotion.gates()
        keys = sorted(
            (
                partitions.get_partition_key_from_str(k).keys_by_dimension
                for k in context.partition_keys
            ),
            key=lambda d: (d[DATE], d[SYMBOL]),
        )
        rows, decisions = [], []
        for dims in keys:
            symbol = dims[SYMBOL]
            window = partitions.partitions_defs[0].partitions_def.time_window_for_partition_key(
                dims[DATE]
            )
            as_of, as_of_end = as_of_window(partitions, pd.Timestamp(window.start))
            wins = windows_for(
                as_of_end, settings.train_days, settings.eval_days, settings.label_horizon, bar
            )
            with store.connect() as conn:
                incumbent = incumbent_for(conn, symbol, as_of)
            scored = score_candidates(store, settings, symbol, as_of, wins, incumbent)
            decision = decide(symbol, as_of, scored.candidates, incumbent, gates)
            if scored.missing:  # a family without a backtest is no candidate: say so
                decision = replace(
                    decision,
                    reason=f"{decision.reason} Not candidates (no evaluation for this "
                    f"partition): {', '.join(scored.missing)}.",
                )
            with store.connect() as conn:
                apply(conn, decision)
            decisions.append((decision, scored.missing))
            rows.append(_row(decision, scored.missing))
        last, missing = decisions[-1]
        return dg.Output(
            _typed(pd.DataFrame(rows)),
            metadata={
                "decisions": len(decisions),
                "action": last.action,
                "champion": last.champion.label if last.champion else "none",
                "reason": last.reason,
                "missing_families": ", ".join(missing) or "none",
                "gates": dg.MetadataValue.md(_gate_table(last)),
                "gate_config": dg.MetadataValue.json(gates.as_dict()),
            },
        )

    return dg.Definitions(assets=[promoted_model])


def _row(decision: Decision, missing: list[str]) -> dict:
    champion, previous = decision.champion, decision.previous
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
        "missing_families": ",".join(missing),
        "reason": decision.reason,
    }


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Explicit column types: a first decision without a champion must not create the
    table with NULL-typed columns."""
    text = [c for c in frame.columns if c not in ("as_of", "champion_as_of")]
    frame[text] = frame[text].astype("string")
    frame["champion_as_of"] = pd.to_datetime(frame["champion_as_of"], utc=True)
    return frame


def _gate_table(decision: Decision) -> str:
    if not decision.reports:
        return "no candidates"
    names = [g.name for g in next(iter(decision.reports.values())).gates]
    head = "| family | " + " | ".join(names) + " | verdict |\n|---|" + "---|" * (len(names) + 1)
    lines = []
    for family, report in decision.reports.items():
        cells = []
        for g in report.gates:
            value = "n/a" if g.value is None else f"{g.value:.3g}"
            cells.append(f"{'✅' if g.passed else '❌'} {value}")
        lines.append(
            f"| {family} | "
            + " | ".join(cells)
            + f" | {'eligible' if report.passed else 'rejected'} |"
        )
    return head + "\n" + "\n".join(lines)
