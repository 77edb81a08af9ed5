"""``clm``: the registry from the command line, and the offline demo.

Every command opens the DuckDB file only for as long as it reads or writes, so it never
blocks a running materialization for longer than a query.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline offline on the bundled sample")
    demo.add_argument("--days", type=int, default=90, help="features days shown in the summary")
    status = sub.add_parser("status", help="champion per symbol: family, version, age, metrics")
    status.add_argument("--symbol")
    promote = sub.add_parser("promote", help="promote a model by hand (it must pass the gates)")
    promote.add_argument("--symbol", required=True)
    promote.add_argument("--family", required=True)
    promote.add_argument("--as-of", required=True, help="as-of partition date, e.g. 2018-12-31")
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
    args = parser.parse_args(argv)

    if args.command == "demo":
        from clm_assets.demo import run_demo

        return run_demo(days=args.days)
    settings = Settings.from_env()
    store = DuckDBStore(settings.db_path, settings.lock_timeout_s)
    if not settings.db_path.exists():
        print(f"no DuckDB file at {settings.db_path}: materialize something first (make demo)")
        return 1
    handler = {
        "status": _status,
        "promote": _promote,
        "rollback": _rollback,
        "report": _report,
        "walkforward": _walkforward,
    }[args.command]
    return handler(store, settings, args)


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
        installed = decisions[decisions["champion_family"].eq(champ.family)]
        since = installed["decided_at"].iloc[-1] if len(installed) else None
        age = f"{(now - since).total_seconds() / 3600:.1f} h" if since is not None else "unknown"
        print(f"  champion: {champ.family} version {champ.version} as of {champ.as_of:%Y-%m-%d}")
        print(f"  in production for: {age}")
        if ev is not None:
            m = ev["metrics"]
            keys = (
                "sharpe",
                "sortino",
                "max_drawdown",
                "profit_factor",
                "win_rate",
                "trade_count",
                "psr",
            )
            shown = "  ".join(f"{k}={_fmt(m.get(k))}" for k in keys)
            print(
                f"  evaluation [{ev['eval_start']:%Y-%m-%d} → {ev['eval_end']:%Y-%m-%d}]: {shown}"
            )
            print(f"  buy-and-hold sharpe={_fmt(m.get('bh_sharpe'))}")
        if len(installed):
            report = installed.iloc[-1]["gate_reports"].get(champ.family, {})
            gates = report.get("report", report).get("gates", [])
            for gate in gates:
                mark = "pass" if gate["passed"] else "FAIL"
                print(f"  gate {gate['name']:<18} {mark}  {gate['reason']}")
    return 0


def _promote(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.registry.promotion import promote_manual

    with store.connect() as conn:
        decision = promote_manual(
            conn,
            args.symbol,
            args.family,
            pd.Timestamp(args.as_of, tz="UTC"),
            args.reason,
            force=args.force,
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
        print("no evaluations recorded yet")
        return 1
    sql = (
        "SELECT family, as_of, version, sharpe, tearsheet_path FROM registry.evaluations "
        "WHERE symbol = ?"
    )
    params: list = [args.symbol]
    if args.as_of:
        sql += " AND as_of = ?"
        params.append(pd.Timestamp(args.as_of).to_pydatetime())
    rows = store.query(sql + " ORDER BY as_of DESC, family", params)
    if rows.empty:
        print(f"no evaluations of {args.symbol}")
        return 1
    print(rows.to_string(index=False))
    return 0


def _walkforward(store: DuckDBStore, settings: Settings, args: argparse.Namespace) -> int:
    from clm_assets.backtest.walkforward import walk_forward
    from clm_assets.backtest.window import context_days
    from clm_assets.partitions import as_of_window, model_partitions
    from clm_assets.sources.intervals import interval_delta

    partitions = model_partitions(settings)
    from clm_assets.registry.promotion import history

    with store.connect() as conn:
        decided = history(conn, args.symbol)["as_of"].unique()
    ends = {pd.Timestamp(a): as_of_window(partitions, pd.Timestamp(a))[1] for a in decided}
    bar = interval_delta(settings.interval)
    record = walk_forward(
        store,
        args.symbol,
        settings.interval,
        ends,
        context=context_days(bar) * pd.Timedelta(days=1),
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
    lines += [f"  {k:<16}{_fmt(m.get(k)):>12}{_fmt(m.get('bh_' + k)):>12}" for k in keys]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
