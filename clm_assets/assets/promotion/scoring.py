"""Candidates of one (symbol, as-of), each with its PSR against the incumbent re-scored on
the candidate's own evaluation window."""

from dataclasses import dataclass

import pandas as pd

from clm_assets.backtest.metrics import per_bar_sharpe, probabilistic_sharpe_ratio
from clm_assets.backtest.window import Costs, evaluate_on_window
from clm_assets.models.families import FAMILIES
from clm_assets.models.windows import Windows
from clm_assets.registry.decisions import Candidate, ChampionRef
from clm_assets.registry.evaluations import evaluation, record_evaluation
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice
from clm_assets.storage.models import read_model


@dataclass
class Scored:
    candidates: list[Candidate]
    missing: list[str]
    """Families without an evaluation for this partition: not candidates, and said so."""
    incumbent_sharpe: float | None


def score_candidates(
    store: DuckDBStore,
    settings: Settings,
    symbol: str,
    as_of: pd.Timestamp,
    wins: Windows,
    incumbent: ChampionRef | None,
) -> Scored:
    with store.connect() as conn:
        rows = {f: evaluation(conn, f, symbol, as_of) for f in FAMILIES}
    missing = [f for f, row in rows.items() if row is None]
    incumbent_returns = (
        _incumbent_returns(store, settings, incumbent, wins) if incumbent is not None else None
    )
    sr_star = per_bar_sharpe(incumbent_returns) if incumbent_returns is not None else None
    candidates = []
    for family, row in rows.items():
        if row is None:
            continue
        returns = _candidate_returns(store, family, symbol, as_of)
        psr_inc = probabilistic_sharpe_ratio(returns, sr_star) if sr_star is not None else None
        metrics = {**row["metrics"], "psr_vs_incumbent": psr_inc}
        if incumbent is not None:  # the evaluation now states whom it was compared with
            with store.transaction() as conn:
                record_evaluation(
                    conn,
                    family=family,
                    symbol=symbol,
                    as_of=as_of,
                    version=row["version"],
                    eval_start=row["eval_start"],
                    eval_end=row["eval_end"],
                    bars=row["bars"],
                    metrics=metrics,
                    tearsheet_path=row["tearsheet_path"],
                    incumbent=incumbent,
                )
        candidates.append(
            Candidate(
                family=family,
                as_of=as_of,
                version=row["version"],
                metrics=metrics,
                psr_vs_incumbent=psr_inc,
                per_bar_sharpe=per_bar_sharpe(returns),
            )
        )
    return Scored(candidates, missing, sr_star)


def _candidate_returns(store: DuckDBStore, family: str, symbol: str, as_of: pd.Timestamp):
    """The per-bar net returns its backtest stored (the same bars the metrics came from)."""
    table = TableSlice(
        "evaluation",
        f"backtest_{family}",
        (SliceCell((("symbol", symbol),), "as_of", as_of, as_of + pd.Timedelta(microseconds=1)),),
    )
    return store.read(table, columns=["return"], order_by=['"open_time"'])["return"].to_numpy()


def _incumbent_returns(
    store: DuckDBStore, settings: Settings, incumbent: ChampionRef, wins: Windows
):
    """The incumbent, loaded from its stored bytes, backtested on this window."""
    artifact = read_model(store, incumbent.family, incumbent.symbol, incumbent.as_of)
    consumer = f"incumbent {incumbent.label}"
    costs = Costs(settings.fee_bps, settings.slippage_bps, settings.long_only)
    result = evaluate_on_window(store, artifact, wins, settings.interval, costs, consumer).result
    return result.returns
