"""One way to show a number: a value that could not be computed never looks like one."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clm_assets.numbers import fmt_number


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_undefined_values_show_as_na(value: float | None) -> None:
    assert fmt_number(value) == "n/a"


@given(st.floats(min_value=-1e300, max_value=1e300))
def test_a_finite_number_reads_back_within_its_digits(value: float) -> None:
    shown = fmt_number(value, 4)
    assert float(shown) == pytest.approx(value, rel=5e-4, abs=0)
