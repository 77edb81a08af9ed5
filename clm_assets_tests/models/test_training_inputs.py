"""What a fit is given is checked or counted, never silently dropped.

* A parameter the family does not define is refused (the libraries ignore an unknown key,
  so ``max_dept`` would train with the default depth while the card recorded ``max_dept``).
* Rows left out for a missing label are counted on the card (``rows_unlabeled``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN
from clm_assets.models.base import ModelError, training_matrix
from clm_assets.models.families import FAMILIES, model_class, validate_params
from clm_assets.models.gbdt import XGBoostModel
from clm_assets_tests.factories import simple_feature_frame

KNOWN = {family: set(model_class(family).default_params()) for family in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_misspelled_parameter_is_refused_with_the_close_match(family: str) -> None:
    real = sorted(KNOWN[family])[0]
    typo = real[:-1]  # drop the last letter, as in max_dept
    with pytest.raises(ModelError) as caught:
        model_class(family)({typo: 1})
    message = str(caught.value)
    assert message.startswith(f"{family}: unknown parameter {typo!r}")
    assert f"did you mean {real!r}" in message
    assert all(name in message for name in KNOWN[family])  # the allowed names are listed


def test_the_issue_example_names_the_family_key_and_suggestion() -> None:
    with pytest.raises(ModelError, match=r"xgboost: unknown parameter 'max_dept' \(did you mean"):
        validate_params({"xgboost": {"max_dept": 2}})


@settings(max_examples=50, deadline=None)
@given(
    family=st.sampled_from(list(FAMILIES)),
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3, unique=True),
)
def test_any_unknown_key_is_refused_by_model_and_validator(family: str, keys: list[str]) -> None:
    unknown = [k for k in keys if k not in KNOWN[family]]
    assume(unknown and not {"seed", "random_state", "random_seed"} & set(keys))
    params = dict.fromkeys(keys, 1)
    for check in (lambda: model_class(family)(params), lambda: validate_params({family: params})):
        with pytest.raises(ModelError) as caught:
            check()
        assert all(repr(k) in str(caught.value) for k in unknown)


def test_unknown_family_is_refused_with_the_close_match() -> None:
    with pytest.raises(ModelError, match=r"unknown model family 'xgbost' \(did you mean 'xgboost'"):
        validate_params({"xgbost": {"max_depth": 2}})
    with pytest.raises(ModelError, match="known: xgboost, lightgbm, nhits, patchtst, ppo"):
        validate_params({"arima": {}})


def test_parameters_must_be_a_mapping() -> None:
    with pytest.raises(ModelError, match="lightgbm: parameters must be a mapping"):
        validate_params({"lightgbm": [("num_leaves", 3)]})  # type: ignore[dict-item]


def test_known_parameters_pass_and_reach_the_model() -> None:
    params = {"xgboost": {"max_depth": 2, "n_estimators": 5}, "ppo": {"iterations": 1}}
    validate_params(params)  # raises on any problem
    model = XGBoostModel(params["xgboost"], seed=1)
    card = model.fit(simple_feature_frame(300, seed=1), horizon=4)
    assert card.params["max_depth"] == 2 and card.params["n_estimators"] == 5
    assert len(card.loss_curve) == 5


@settings(max_examples=30, deadline=None)
@given(holes=st.sets(st.integers(0, 269), max_size=40))
def test_rows_dropped_for_a_missing_label_are_counted(holes: set[int]) -> None:
    frame = simple_feature_frame(300, seed=4, horizon=4)  # 270 rows, the last 4 unlabeled
    frame.loc[sorted(holes), LABEL_RETURN] = np.nan
    frame.loc[sorted(holes), LABEL_SIGN] = np.nan
    expected = len(holes | set(range(266, 270)))
    rows, _, unlabeled = training_matrix(frame)
    assert unlabeled == expected
    assert len(rows) + unlabeled == len(frame)


def test_card_reports_rows_left_out_for_a_missing_label() -> None:
    frame = simple_feature_frame(300, seed=4, horizon=4)
    frame.loc[100:109, [LABEL_RETURN, LABEL_SIGN]] = np.nan  # e.g. a gap in the bars
    card = XGBoostModel({"n_estimators": 3}, seed=0).fit(frame, horizon=4)
    assert card.rows_unlabeled == 14
