"""What the production model promised and what it did since: the divergence report of the
``live_performance`` asset and the input of the ``performance_degradation`` sensor.

The promise is the champion's own evaluation (its backtest on the window right before its
as-of, stored in ``registry.evaluations``): per-bar mean and volatility of its net returns
and its maximum drawdown. The live record is the paper record of the current reign (the
bars traded since the decision that put this champion in production). Both go through
:func:`clm_assets.monitoring.degradation.detect`, the one test both the UI and the sensor use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from clm_assets.backtest.metrics import max_drawdown_of, per_bar_sharpe, periods_per_year
from clm_assets.backtest.report import figure_png
from clm_assets.monitoring.degradation import (
    DetectorConfig,
    Expectation,
    Verdict,
    cusum_path,
    detect,
)
from clm_assets.monitoring.paper import NO_CHAMPION
from clm_assets.numbers import fmt_number
from clm_assets.registry.evaluations import evaluation


class NoExpectationError(RuntimeError):
    """The champion has no stored evaluation to compare with (or one without a finite
    volatility): there is no promise to check, so nothing is judged."""


def expectation_of(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: pd.Timestamp, interval: str
) -> Expectation:
    """The champion's evaluation as a per-bar promise."""
    row = evaluation(conn, family, symbol, as_of)
    if row is None:
        raise NoExpectationError(f"{family}@{as_of} of {symbol} has no stored evaluation")
    m = row["metrics"]
    sharpe, vol, mdd = m.get("sharpe"), m.get("volatility"), m.get("max_drawdown")
    if not all(v is not None and math.isfinite(v) for v in (sharpe, vol, mdd)) or vol <= 0:
        raise NoExpectationError(
            f"{family}@{as_of} of {symbol}: its evaluation has no finite Sharpe, volatility "
            f"and drawdown (sharpe={sharpe}, volatility={vol}, max_drawdown={mdd})"
        )
    label = (
        f"{family}@{as_of:%Y-%m-%d %H:%M} v{row['version']} backtest "
        f"[{row['eval_start']:%Y-%m-%d %H:%M}, {row['eval_end']:%Y-%m-%d %H:%M})"
    )
    return Expectation.from_annual(sharpe, vol, mdd, periods_per_year(interval), label)


def current_reign(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the newest reign: the bars traded by the family in production at the
    last bar since it took over (refreshes of the family continue its reign: the
    procedure judged at promotion is the same), or none when the symbol is flat."""
    if rows.empty or rows["champion"].iloc[-1] == NO_CHAMPION:
        return rows.iloc[:0]
    other = (rows["family"] != rows["family"].iloc[-1]).fillna(True).to_numpy(dtype=bool)
    start = int(np.flatnonzero(other)[-1]) + 1 if other.any() else 0
    return rows.iloc[start:]


@dataclass(frozen=True)
class Divergence:
    champion: str
    expectation: Expectation
    live: pd.Series
    verdict: Verdict

    def table(self, interval: str) -> str:
        """Live record vs the promise, per bar and annualized, as markdown."""
        periods = periods_per_year(interval)
        e, r = self.expectation, self.live
        live_sr = per_bar_sharpe(r.to_numpy())
        rows = [
            ("bars", len(r), "n/a"),
            ("mean return / bar", r.mean() if len(r) else None, e.mean),
            ("volatility / bar", r.std(ddof=1) if len(r) > 1 else None, e.std),
            (
                "Sharpe (annualized)",
                None if live_sr is None else live_sr * math.sqrt(periods),
                e.mean / e.std * math.sqrt(periods),
            ),
            ("max drawdown", max_drawdown_of(r.to_numpy()) if len(r) else None, e.max_drawdown),
        ]
        body = "\n".join(f"| {k} | {fmt_number(a)} | {fmt_number(b)} |" for k, a, b in rows)
        return f"| since promotion ({self.champion}) | live | backtest |\n|---|---:|---:|\n{body}"


def divergence(
    rows: pd.DataFrame,
    conn: duckdb.DuckDBPyConnection,
    interval: str,
    config: DetectorConfig,
    after: pd.Timestamp | None = None,
) -> Divergence | None:
    """The current reign's record (bars after ``after``, the last alarm, if given) against
    its champion's promise; None when the symbol has no champion."""
    reign = current_reign(rows)
    if reign.empty:
        return None
    first = reign.iloc[0]  # the promise that put the procedure into production
    expectation = expectation_of(
        conn, first["family"], first["symbol"], pd.Timestamp(first["model_as_of"]), interval
    )
    live = reign.set_index("open_time")["return"].astype("float64")
    if after is not None:
        live = live[live.index > after]
    label = f"{first['family']} since {first['promoted_at']:%Y-%m-%d %H:%M}"
    return Divergence(label, expectation, live, detect(live, expectation, config))


def divergence_png(div: Divergence, config: DetectorConfig) -> bytes:
    """Live equity since promotion against the promise (haircut and full), and the CUSUM
    statistic against its threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 3.8), dpi=90, sharex=True)
    times = div.live.index.tz_convert(None)
    n = np.arange(1, len(div.live) + 1)
    top.plot(times, np.cumprod(1 + div.live.to_numpy()), label="live (paper)", linewidth=1.2)
    top.plot(times, (1 + div.expectation.mean) ** n, label="backtest promise", linewidth=0.9)
    top.plot(
        times,
        (1 + config.haircut * div.expectation.mean) ** n,
        label=f"haircut {config.haircut:g}",
        linewidth=0.9,
        linestyle="--",
    )
    top.set_title(div.champion, fontsize=9)
    top.legend(fontsize=7)
    path = cusum_path(div.live, div.expectation, config) if len(div.live) else div.live
    bottom.plot(times, path.to_numpy(), label="CUSUM", linewidth=1.0, color="tab:red")
    bottom.axhline(config.threshold, color="grey", linewidth=0.8, linestyle="--")
    bottom.legend(fontsize=7)
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
    return figure_png(fig)
