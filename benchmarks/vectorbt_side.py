"""The vectorbt side of ``bench_vectorbt``, run in ``benchmarks/.venv-vectorbt``.

vectorbt >= 1.1 needs pandas >= 3 and the project is pinned to pandas 2, so this script
runs in its own interpreter and talks to the benchmark through files only:

    python vectorbt_side.py DIR REPEATS

reads ``DIR/inputs.npz`` (``open``, ``close``, ``units``: the target amount per bar, NaN
for no order; ``fraction``: the target fraction per bar for vectorbt's own
``targetpercent`` sizing; scalars ``fees`` and ``init_cash``) and writes
``DIR/vectorbt.npz`` (``value``, ``returns`` of the unit replay, ``value_targetpercent``)
and ``DIR/vectorbt.json`` (versions, position count, timings).

Timed, wall clock: one call of ``simulate`` (``Portfolio.from_orders`` then ``value()``,
``returns()`` and the position records, the outputs ``run_backtest`` computes in its one
call) right after import, which includes numba's compilation or the loading of its
on-disk cache (``first_call_s``); then ``REPEATS`` warm calls, best kept
(``simulate_s``), and the same for ``from_orders`` alone (``from_orders_s``).
"""

from __future__ import annotations

import json
import sys
import time
import timeit
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

t_import = time.perf_counter()
import vectorbt as vbt  # noqa: E402 (timed)

IMPORT_S = time.perf_counter() - t_import


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls: the least disturbed by the rest of the machine."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def from_orders(d: Any, size: np.ndarray, size_type: str, exact: bool) -> Any:
    """Orders filled at the bar's open, fees as a fraction of the notional traded, no
    minimum size; ``exact`` refuses partial fills and raises on any rejected order."""
    return vbt.Portfolio.from_orders(
        d["close"],
        size=size,
        size_type=size_type,
        price=d["open"],
        fees=float(d["fees"]),
        init_cash=float(d["init_cash"]),
        min_size=0.0,
        allow_partial=not exact,
        raise_reject=exact,
        freq="1h",
    )


def simulate(d: Any) -> tuple[np.ndarray, np.ndarray, int]:
    pf = from_orders(d, d["units"], "targetamount", exact=True)
    return pf.value().to_numpy(), pf.returns().to_numpy(), len(pf.positions.records)


def main(folder: Path, repeats: int) -> None:
    d = dict(np.load(folder / "inputs.npz"))
    t0 = time.perf_counter()
    value, returns, positions = simulate(d)
    first_call_s = time.perf_counter() - t0
    simulate_s = best(lambda: simulate(d), repeats)
    from_orders_s = best(lambda: from_orders(d, d["units"], "targetamount", True), repeats)
    percent = from_orders(d, d["fraction"], "targetpercent", exact=False).value().to_numpy()
    np.savez(folder / "vectorbt.npz", value=value, returns=returns, value_targetpercent=percent)
    report = {
        "versions": {p: version(p) for p in ("vectorbt", "numba", "numpy", "pandas")},
        "python": sys.version.split()[0],
        "positions": positions,
        "import_s": IMPORT_S,
        "first_call_s": first_call_s,
        "simulate_s": simulate_s,
        "from_orders_s": from_orders_s,
        "repeats": repeats,
    }
    (folder / "vectorbt.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
