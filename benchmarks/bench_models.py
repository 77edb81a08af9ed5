"""Training time, model size and prediction time of every family at its defaults.

The data is what ``make demo`` trains on: the bundled sample's 90 days of hourly bars
before 2018-12-17, with the real feature set. The baseline measured in the same run is
LightGBM, the cheapest family; the target is all five within 5 minutes on 2 cores.

    python benchmarks/bench_models.py
"""

from __future__ import annotations

import time

import pandas as pd

from clm_assets.features.indicators import compute_features
from clm_assets.models.families import FAMILIES, model_class
from clm_assets.sources.sample import SampleSource

TARGETS = [
    ("all five families train in <= 300 s (defaults, 90 days 1h)", "total_train_s", "<=", 300.0),
    ("every reload predicts exactly as the trained model", "round_trips_equal", "==", True),
]
START, END = pd.Timestamp("2018-08-19", tz="UTC"), pd.Timestamp("2018-12-17", tz="UTC")


def training_frame() -> pd.DataFrame:
    bars = SampleSource().fetch("BTC-USD", "1h", START, END)
    frame = compute_features(bars, "BTC-USD", horizon=4)
    return frame[frame["open_time"] >= END - pd.Timedelta(days=90)].reset_index(drop=True)


def run() -> dict:
    frame = training_frame()
    out: dict = {"rows": len(frame), "round_trips_equal": True}
    for family in FAMILIES:
        model = model_class(family)(seed=0)
        started = time.perf_counter()
        model.fit(frame, horizon=4)
        out[f"{family}_train_s"] = time.perf_counter() - started
        blob = model.to_bytes()
        out[f"{family}_bytes"] = len(blob)
        started = time.perf_counter()
        predicted = model.predict(frame)
        out[f"{family}_predict_s"] = time.perf_counter() - started
        reloaded = model_class(family).from_bytes(blob).predict(frame)
        out["round_trips_equal"] &= bool(reloaded.equals(predicted))
    out["total_train_s"] = sum(out[f"{f}_train_s"] for f in FAMILIES)
    return out


def print_table(result: dict) -> None:
    base = result["lightgbm_train_s"]
    print(f"models on {result['rows']} rows (90 days of 1h bars), defaults, 2 cores")
    print(f"{'family':<10}{'train s':>9}{'x lightgbm':>12}{'MB':>8}{'predict s':>11}")
    for family in FAMILIES:
        t = result[f"{family}_train_s"]
        print(
            f"{family:<10}{t:>9.1f}{t / base:>12.1f}{result[f'{family}_bytes'] / 1e6:>8.2f}"
            f"{result[f'{family}_predict_s']:>11.2f}"
        )
    print(f"{'total':<10}{result['total_train_s']:>9.1f}  (target <= 300 s)")


if __name__ == "__main__":
    print_table(run())
