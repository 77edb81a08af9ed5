"""``clm``: the registry from the command line, and the offline demo.

Every command opens the DuckDB file only for as long as it reads or writes, so it never
blocks a running materialization for longer than a query.

A bad setting or argument is one line on stderr naming it and what is allowed (exit 2),
checked before any work; a refused operation (nothing to roll back, a model that is not
registered, an unreadable database) is one line too (exit 1). No traceback: a user of the
CLI should not have to read our code to learn what to type instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from clm_assets.backtest.walkforward import WalkForwardError
from clm_assets.models.families import FAMILIES
from clm_assets.numbers import fmt_number
from clm_assets.registry.decisions import ChampionRef, RegistryError
from clm_assets.settings import Settings, SettingsError
from clm_assets.storage.duckdb_store import DuckDBStore, StorageError

AS_OF_FORMATS = ("%Y-%m-%d", "%Y-%m-%d-%H:%M")
"""Spellings of an as-of partition key: daily cadences, then sub-daily ones."""


class UsageError(ValueError):
    """A command-line argument is not allowed (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (SettingsError, UsageError) as exc:
        print(f"clm {args.command}: {exc}", file=sys.stderr)
        return 2
    except (StorageError, RegistryError, WalkForwardError) as exc:
        print(f"clm {args.command}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline offline on the bundled sample")
    demo.add_argument("--days", type=int, default=90, help="features days shown in the summary")
    status = sub.add_parser("status", help="champion per symbol: family, version, age, metrics")
    status.add_argument("--symbol")
    promote = sub.add_parser("promote", help="promote a model by hand (it must pass the gates)")
    promote.add_argument("--symbol", required=True)
    promote.add_argument("--family", required=True, help=f"one of {', '.join(FAMILIES)}")
    promote.add_argument("--as-of", required=True, help="as-of partition key, e.g. 2018-12-31")
    promote.add_argument("--reason", required=True)
    promote.add_argument("--force", action="store_true", help="override failed gates (recorded)")
    rollback = sub.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("--symbol", required=True)
    rollback.add_argument("--reason", required=True)
    report = sub.add_parser("report", help="where the tearsheets of a symbol are")
    report.add_argument("--symbol", required=True)
    report.add_argument("--as-of")
    walk = sub.add_parser("walkforward", help="stitched out-of-sample record of the champions")
    walk.add_argument("--symbol", required=True)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from clm_assets.demo import run_demo

        return run_demo(days=args.days)
    settings = Settings.from_env()
    _check_arguments(args, settings)
    if not settings.db_path.exists():
        print(
            f"no DuckDB file at {settings.db_path}: materialize something first (make demo)",
            file=sys.stderr,
        )
        return 1
    store = DuckDBStore(settings.db_path, settings.lock_timeout_s)
    handler = {
        "status": _status,
        "promote": _promote,
        "rollback": _rollback,
        "report": _report,
        "walkforward": _walkforward,
    }[args.command]
    return handler(store, settings, args)


def _check_arguments(args: argparse.Namespace, settings: Settings) -> None:
    """Every argument against what this deployment allows, before the database is opened."""
    if args.symbol is not None and args.symbol not in settings.symbols:
        raise UsageError(
            f"--symbol {args.symbol!r} is not configured; configured symbols (CLM_SYMBOLS): "
            f"{', '.join(settings.symbols)}"
        )
    family = getattr(args, "family", None)
    if family is not None and family not in FAMILIES:
        raise UsageError(
            f"--family {family!r} is not a model family; choose one of {', '.join(FAMILIES)}"
        )
    if getattr(args, "as_of", None) is not None:
        args.as_of = _as_of(args.as_of)


def _as_of(text: str) -> pd.Timestamp:
    for fmt in AS_OF_FORMATS:
        try:
            return pd.Timestamp(datetime.strptime(text, fmt), tz="UTC")
        except ValueError:
            continue
    raise UsageError(
        f"--as-of {text!r} is not an as-of partition key; use YYYY-MM-DD (e.g. 2018-12-31), "
        "or YYYY-MM-DD-HH:MM for a sub-daily CLM_MODEL_CRON"
    )


def _status(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.registry.evaluations import evaluation
    from clm_assets.registry.promotion import champion, history

    symbols = [args.symbol] if args.symbol else list(settings.symbols)
    now = pd.Timestamp.now(tz="UTC")
    for symbol in symbols:
        with store.connect() as conn:
            champ = champion(conn, symbol)
            decisions = history(conn, symbol)
            ev = evaluation(conn, champ.family, symbol, champ.as_of) if champ else None
        print(f"== {symbol}")
        if champ is None:
            last = decisions.iloc[-1]["reason"] if len(decisions) else "no decision recorded"
            print(f"  no champion. Last decision: {last}")
            continue
        print(f"  champion: {champ.family} version {champ.version} as of {champ.as_of:%Y-%m-%d}")
        chose = _is_model(decisions, "champion", champ)
        installs = decisions[chose & ~_is_model(decisions, "previous", champ)]
        if len(installs):
            row = installs.iloc[-1]
            hours = (now - row["decided_at"]).total_seconds() / 3600
            print(
                f"  in production since {row['decided_at']:%Y-%m-%d %H:%M:%S} UTC ({hours:.1f} h),"
                f" installed by {row['action']} decision {row['decision_id']}"
            )
        else:
            print(f"  in production since: no recorded decision installed version {champ.version}")
        _print_evaluation(ev, champ.version)
        _print_gates(decisions[chose], champ)
    return 0


def _is_model(decisions: pd.DataFrame, prefix: str, model: ChampionRef) -> pd.Series:
    """Rows whose ``{prefix}_*`` model is exactly ``model``: family, as-of AND version (a
    re-trained slot, or a same-family candidate of a later as-of, is another model)."""
    return (
        decisions[f"{prefix}_family"].eq(model.family)
        & decisions[f"{prefix}_as_of"].eq(model.as_of)
        & decisions[f"{prefix}_version"].eq(model.version)
    )


def _print_evaluation(ev: dict | None, version: str) -> None:
    if ev is None:
        print("  evaluation: none recorded")
        return
    if ev["version"] != version:
        print(f"  evaluation: the one recorded is of version {ev['version']}; re-evaluate")
        return
    m = ev["metrics"]
    keys = ("sharpe", "sortino", "max_drawdown", "profit_factor", "win_rate", "trade_count", "psr")
    shown = "  ".join(f"{k}={fmt_number(m.get(k))}" for k in keys)
    print(f"  evaluation [{ev['eval_start']:%Y-%m-%d} → {ev['eval_end']:%Y-%m-%d}]: {shown}")
    print(f"  buy-and-hold sharpe={fmt_number(m.get('bh_sharpe'))}")


def _print_gates(chose: pd.DataFrame, champ: ChampionRef) -> None:
    """The gates recorded for this exact model by the latest decision that judged it (a
    rollback restores a model without judging it again: its gates are those it was
    promoted on)."""
    for _, row in chose.iloc[::-1].iterrows():
        entry = row["gate_reports"].get(champ.family) or {}
        if entry.get("version") != champ.version or pd.Timestamp(entry.get("as_of")) != champ.as_of:
            continue
        print(f"  gates recorded by {row['action']} decision {row['decision_id']}:")
        for gate in entry["report"]["gates"]:
            mark = "pass" if gate["passed"] else "FAIL"
            print(f"  gate {gate['name']:<18} {mark}  {gate['reason']}")
        return
    print(f"  gates: no decision recorded gate values for version {champ.version}")


def _promote(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.registry.promotion import promote_manual

    with store.connect() as conn:
        decision = promote_manual(
            conn, args.symbol, args.family, args.as_of, args.reason, force=args.force
        )
    print(f"{decision.action}: {decision.reason}")
    return 0


def _rollback(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.registry.promotion import rollback

    with store.connect() as conn:
        decision = rollback(conn, args.symbol, args.reason)
    print(f"{decision.action}: {decision.reason}")
    return 0


def _report(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    if not store.table_exists("registry", "evaluations"):
        print("no evaluations recorded yet", file=sys.stderr)
        return 1
    sql = (
        "SELECT family, as_of, version, sharpe, tearsheet_path FROM registry.evaluations "
        "WHERE symbol = ?"
    )
    params: list = [args.symbol]
    if args.as_of is not None:
        sql += " AND as_of = ?"
        params.append(args.as_of.tz_localize(None).to_pydatetime())
    rows = store.query(sql + " ORDER BY as_of DESC, family", params)
    if rows.empty:
        print(f"no evaluations of {args.symbol}", file=sys.stderr)
        return 1
    print(rows.to_string(index=False))
    return 0


def _walkforward(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.backtest.walkforward import walk_forward
    from clm_assets.backtest.window import context_days
    from clm_assets.partitions import as_of_window, model_partitions
    from clm_assets.registry.decisions import AUTOMATIC_ACTIONS
    from clm_assets.registry.promotion import history
    from clm_assets.sources.intervals import interval_delta

    with store.connect() as conn:
        decisions = history(conn, args.symbol)
    automatic = decisions[decisions["action"].isin(AUTOMATIC_ACTIONS)]
    partitions = model_partitions(settings)
    ends = {
        pd.Timestamp(a): as_of_window(partitions, pd.Timestamp(a))[1] for a in automatic["as_of"]
    }
    record = walk_forward(
        store,
        args.symbol,
        settings.interval,
        automatic,
        ends,
        context=context_days(interval_delta(settings.interval)) * pd.Timedelta(days=1),
        fee_bps=settings.fee_bps,
        slippage_bps=settings.slippage_bps,
        long_only=settings.long_only,
    )
    print(f"walk-forward {args.symbol}: {len(record.segments)} segments")
    for seg in record.segments:
        print(f"  {seg.start:%Y-%m-%d %H:%M} → {seg.end:%Y-%m-%d %H:%M}  {seg.champion}")
    print(metrics_vs_benchmark(record.metrics))
    return 0


def metrics_vs_benchmark(m: dict) -> str:
    keys = (
        "total_return",
        "cagr",
        "sharpe",
        "sortino",
        "max_drawdown",
        "volatility",
        "win_rate",
        "profit_factor",
        "exposure",
        "trade_count",
        "psr",
    )
    lines = [f"  {'metric':<16}{'strategy':>12}{'buy & hold':>12}"]
    lines += [
        f"  {k:<16}{fmt_number(m.get(k)):>12}{fmt_number(m.get('bh_' + k)):>12}" for k in keys
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
