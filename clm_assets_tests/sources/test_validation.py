"""The candle policy, rule by rule: what is rejected (naming the partition), what is repaired
(and counted), what is only reported (gaps), and ``check_candles`` as the independent judge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clm_assets.sources.validation import (
    CandleValidationError,
    ValidationReport,
    check_candles,
    validate_candles,
)
from clm_assets_tests.factories import random_walk_bars

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-01-03", tz="UTC")
LABEL = "BTC-USD 2024-01-01..2024-01-02"
CLEAN_CHECK = {
    "duplicate_bars": 0,
    "unsorted_bars": 0,
    "off_grid_bars": 0,
    "bars_outside_partition": 0,
    "ohlc_violations": 0,
    "nonpositive_prices": 0,
    "non_finite_values": 0,
    "negative_volume": 0,
    "row_count_mismatch": 0,
}


@pytest.fixture
def clean() -> pd.DataFrame:
    return random_walk_bars(48, seed=3)  # exactly [START, END) hourly


def judge(bars: pd.DataFrame, end: pd.Timestamp = END) -> dict[str, int]:
    """``check_candles`` on bars read back as written (the count matches)."""
    return check_candles(bars, "1h", START, end, len(bars))


def validate(bars: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    return validate_candles(bars, "1h", START, END, LABEL)


def test_clean_bars_pass_untouched(clean: pd.DataFrame) -> None:
    out, report = validate(clean)
    pd.testing.assert_frame_equal(out, clean)
    assert report.repairs == 0 and report.missing_bars == 0
    assert (report.rows_in, report.rows_out) == (48, 48)
    assert judge(out) == CLEAN_CHECK


# -- repaired and counted -----------------------------------------------------------------


def test_exact_duplicates_are_dropped_and_counted(clean: pd.DataFrame) -> None:
    # A pagination overlap: bars 20..23 arrive twice, the copies right after the originals.
    messy = pd.concat([clean.iloc[:24], clean.iloc[20:24], clean.iloc[24:]], ignore_index=True)
    out, report = validate(messy)
    pd.testing.assert_frame_equal(out, clean)
    assert report.duplicates_dropped == 4
    assert (report.rows_in, report.rows_out) == (52, 48)


def test_conflicting_duplicates_are_rejected(clean: pd.DataFrame) -> None:
    other = clean.iloc[[10]].assign(close=clean["close"].iloc[10] * 1.01)
    with pytest.raises(CandleValidationError, match="conflicting") as err:
        validate(pd.concat([clean, other], ignore_index=True))
    assert LABEL in str(err.value)
    assert str(clean["open_time"].iloc[10]) in str(err.value)


def test_conflicting_versions_each_sent_twice_are_still_rejected(clean: pd.DataFrame) -> None:
    """Two pages each carrying a copy of both versions: no version is unique, yet they
    disagree, so which one is true is still unknowable."""
    other = clean.iloc[[10]].assign(close=clean["close"].iloc[10] * 1.01)
    messy = pd.concat([clean, clean.iloc[[10]], other, other], ignore_index=True)
    with pytest.raises(CandleValidationError, match=f"{LABEL}: 1 bar times carry conflicting"):
        validate(messy)


def test_out_of_order_bars_are_sorted_and_counted(clean: pd.DataFrame) -> None:
    order = list(range(48))
    order[5], order[6] = order[6], order[5]
    order[30], order[40] = order[40], order[30]
    out, report = validate(clean.iloc[order].reset_index(drop=True))
    pd.testing.assert_frame_equal(out, clean)
    assert report.reordered_rows == 4


def test_high_and_low_are_repaired_to_contain_open_and_close(clean: pd.DataFrame) -> None:
    bad = clean.copy()
    bad.loc[[3, 7], "high"] = bad.loc[[3, 7], ["open", "close"]].min(axis=1) * 0.999
    bad.loc[[7, 11, 12], "low"] = bad.loc[[7, 11, 12], ["open", "close"]].max(axis=1) * 1.001
    assert judge(bad)["ohlc_violations"] == 4
    out, report = validate(bad)
    assert (report.highs_repaired, report.lows_repaired) == (2, 3)
    assert report.repairs == 5
    top = clean[["open", "close"]].max(axis=1)
    bottom = clean[["open", "close"]].min(axis=1)
    np.testing.assert_array_equal(out.loc[[3, 7], "high"], top[[3, 7]])
    np.testing.assert_array_equal(out.loc[[7, 11, 12], "low"], bottom[[7, 11, 12]])
    untouched = ~out.index.isin([3, 7, 11, 12])
    pd.testing.assert_frame_equal(out[untouched], clean[untouched])
    assert judge(out) == CLEAN_CHECK


def test_gaps_are_counted_and_listed_never_filled(clean: pd.DataFrame) -> None:
    holed = clean.drop(index=[0, 5, 6, 7, 47, 30, 31]).reset_index(drop=True)
    out, report = validate(holed)
    assert len(out) == len(holed) == 41  # nothing invented
    assert report.missing_bars == 7
    hours = pd.date_range(START, periods=48, freq="h")
    assert report.first_missing == [hours[i].isoformat() for i in (0, 5, 6, 7, 30)]
    assert judge(out) == CLEAN_CHECK  # gaps are reported, not a violation


# -- rejected, naming the label -----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("close", np.nan, r"NaN in \['close'\]"),
        ("volume", np.nan, r"NaN in \['volume'\]"),
        ("open", 0.0, "1 bars with a non-positive price"),
        ("low", -1.0, "1 bars with a non-positive price"),
        ("volume", -0.5, "1 bars with negative volume"),
    ],
)
def test_bad_values_are_rejected(
    clean: pd.DataFrame, column: str, value: float, message: str
) -> None:
    bad = clean.copy()
    bad.loc[17, column] = value
    with pytest.raises(CandleValidationError, match=message) as err:
        validate(bad)
    assert str(err.value).startswith(f"{LABEL}: ")


def test_off_grid_bars_are_rejected(clean: pd.DataFrame) -> None:
    bad = clean.copy()
    bad.loc[9, "open_time"] += pd.Timedelta(minutes=30)
    with pytest.raises(CandleValidationError, match="not aligned to 1h") as err:
        validate(bad)
    assert str(err.value).startswith(f"{LABEL}: 1 bars")
    assert "2024-01-01 09:30:00" in str(err.value)


@pytest.mark.parametrize(
    "when", [START - pd.Timedelta(hours=1), END, END + pd.Timedelta(days=3)], ids=str
)
def test_bars_outside_the_range_are_rejected(clean: pd.DataFrame, when: pd.Timestamp) -> None:
    stray = clean.iloc[[0]].assign(open_time=when)
    with pytest.raises(CandleValidationError, match="outside") as err:
        validate(pd.concat([clean, stray], ignore_index=True))
    assert str(err.value).startswith(f"{LABEL}: 1 bars outside")
    assert str(when) in str(err.value)


# -- check_candles as the independent judge -----------------------------------------------


def _dup(b: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([b, b.iloc[[4]]], ignore_index=True).sort_values("open_time")


def _swap(b: pd.DataFrame) -> pd.DataFrame:
    return b.iloc[[1, 0, *range(2, len(b))]]


def _set(column: str, value: float):
    def apply(b: pd.DataFrame) -> pd.DataFrame:
        b = b.copy()
        b.loc[4, column] = value
        return b

    return apply


def _shift_minutes(minutes: int):
    def apply(b: pd.DataFrame) -> pd.DataFrame:
        b = b.copy()
        b.loc[47, "open_time"] += pd.Timedelta(minutes=minutes)
        return b

    return apply


def _low_above_high(b: pd.DataFrame) -> pd.DataFrame:
    b = b.copy()
    b.loc[4, "low"] = b.loc[4, "high"] * 1.01
    return b


@pytest.mark.parametrize(
    ("break_it", "violation"),
    [
        (_dup, "duplicate_bars"),
        (_swap, "unsorted_bars"),
        (_set("high", 1.0), "ohlc_violations"),
        (_low_above_high, "ohlc_violations"),
        (_set("close", -2.0), "nonpositive_prices"),
        (_set("open", np.nan), "non_finite_values"),
        (_set("close", np.inf), "non_finite_values"),
        (_shift_minutes(30), "off_grid_bars"),
        (_shift_minutes(48 * 60), "bars_outside_partition"),
        (_set("volume", -1.0), "negative_volume"),
    ],
)
def test_check_candles_counts_each_kind_of_violation(
    clean: pd.DataFrame, break_it, violation: str
) -> None:
    assert judge(clean) == CLEAN_CHECK
    counts = judge(break_it(clean).reset_index(drop=True))
    assert counts[violation] >= 1
    if violation != "ohlc_violations":  # a bad price also breaks the OHLC bounds
        assert counts[violation] == 1


def test_check_candles_counts_rows_that_differ_from_what_was_written(clean) -> None:
    assert check_candles(clean, "1h", START, END, 48) == CLEAN_CHECK
    assert check_candles(clean.iloc[:45], "1h", START, END, 48)["row_count_mismatch"] == 3
    # no record of what was written: the stored rows cannot be vouched for
    assert check_candles(clean, "1h", START, END, None)["row_count_mismatch"] == 1


# -- property: messy but valid input comes out clean --------------------------------------


@st.composite
def messy_bars(draw) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(24, 96))
    bars = random_walk_bars(n, seed=draw(st.integers(0, 10_000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    keep = rng.random(n) > draw(st.sampled_from([0.0, 0.1, 0.4]))  # gaps
    keep[0] = True
    bars = bars[keep].reset_index(drop=True)
    top = bars[["open", "close"]].max(axis=1)
    bottom = bars[["open", "close"]].min(axis=1)
    low_high = rng.random(len(bars)) < 0.2
    high_low = rng.random(len(bars)) < 0.2
    bars.loc[low_high, "high"] = (top - rng.uniform(0, 0.5, len(bars)) * (top - bottom))[low_high]
    bars.loc[high_low, "low"] = (bottom + rng.uniform(0, 0.5, len(bars)) * (top - bottom))[high_low]
    copies = rng.integers(0, len(bars), draw(st.integers(0, len(bars))))
    messy = pd.concat([bars, bars.iloc[copies]], ignore_index=True)
    messy = messy.iloc[rng.permutation(len(messy))].reset_index(drop=True)
    return bars, messy


@settings(max_examples=40, deadline=None)
@given(case=messy_bars())
def test_messy_valid_input_comes_out_clean_with_exactly_its_bars(case) -> None:
    distinct, messy = case
    end = START + pd.Timedelta(hours=96)
    out, report = validate_candles(messy, "1h", START, end, LABEL)
    assert judge(out, end) == CLEAN_CHECK
    assert out["open_time"].tolist() == sorted(set(messy["open_time"]))
    assert report.rows_out == len(out) == len(distinct)
    assert report.duplicates_dropped == len(messy) - len(distinct)
    assert report.missing_bars == 96 - len(distinct)
    # Repairs only widen the range to the open and close; every other value is kept.
    expected = distinct.sort_values("open_time").reset_index(drop=True)
    cols = ["open_time", "open", "close", "volume", "quote_volume", "trades"]
    pd.testing.assert_frame_equal(out[cols], expected[cols])
    assert (out["high"] >= expected["high"]).all() and (out["low"] <= expected["low"]).all()
