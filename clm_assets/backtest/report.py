"""What a person looks at: a quantstats tearsheet (offline) and an equity-curve image."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import pandas as pd

from clm_assets.backtest.engine import BacktestResult
from clm_assets.backtest.metrics import periods_per_year
from clm_assets.numbers import fmt_number


def write_tearsheet(result: BacktestResult, path: Path, title: str, interval: str) -> Path:
    """Full quantstats HTML report of the net returns. ``benchmark=None``: no network."""
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import quantstats as qs

    returns = pd.Series(result.returns, index=result.open_time.tz_convert(None), name=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    qs.reports.html(
        returns,
        benchmark=None,
        output=str(path),
        title=title,
        periods_per_year=round(periods_per_year(interval)),
        download_filename=path.name,
    )
    return path


def equity_png(result: BacktestResult, buy_and_hold: BacktestResult, title: str) -> bytes:
    """Strategy vs buy-and-hold equity as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=90)
    times = result.open_time.tz_convert(None)
    ax.plot(times, result.equity, label="strategy", linewidth=1.2)
    ax.plot(times, buy_and_hold.equity, label="buy & hold", linewidth=1.0, alpha=0.7)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=7)
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """A matplotlib figure with dated x axes as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def metrics_markdown(metrics: dict[str, float | None], keys: list[str]) -> str:
    """Strategy vs buy-and-hold vs flat, side by side; undefined values shown as n/a."""
    rows = [
        f"| {k} | {fmt_number(metrics.get(k))} | {fmt_number(metrics.get('bh_' + k))} | "
        f"{fmt_number(metrics.get('flat_' + k))} |"
        for k in keys
    ]
    return "| metric | strategy | buy & hold | flat |\n|---|---:|---:|---:|\n" + "\n".join(rows)
