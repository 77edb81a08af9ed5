"""``Settings.from_env``: every ``CLM_*`` value is parsed strictly, and a bad one is refused
with one line naming the variable and what it allows, before any work is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clm_assets.settings import Settings, SettingsError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"CLM_DB_PATH": str(tmp_path / "clm.duckdb"), **values}


def refused(environment: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environment)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("word", TRUE_WORDS + FALSE_WORDS)
def test_long_only_accepts_the_documented_words_in_any_case(tmp_path: Path, word: str) -> None:
    for spelled in (word, word.upper(), word.capitalize(), f" {word} "):
        settings = Settings.from_env(env(tmp_path, CLM_LONG_ONLY=spelled))
        assert settings.long_only is (word in TRUE_WORDS)


@pytest.mark.parametrize("word", ["on", "ON", "yes", "1"])
def test_long_only_on_means_long_only(tmp_path: Path, word: str) -> None:
    """``CLM_LONG_ONLY=on`` used to be read as false: the backtest went short."""
    assert Settings.from_env(env(tmp_path, CLM_LONG_ONLY=word)).long_only is True


@given(
    st.text(max_size=8).filter(
        lambda s: s.strip().lower() not in TRUE_WORDS + FALSE_WORDS and "\x00" not in s
    )
)
def test_any_other_long_only_value_is_refused_naming_the_variable(value: str) -> None:
    message = refused({"CLM_LONG_ONLY": value, "CLM_DB_PATH": "/tmp/clm-settings.duckdb"})
    assert "CLM_LONG_ONLY" in message
    assert "on/off" in message


@pytest.mark.parametrize("value", ["y", "2", "n", "", "enabled"])
def test_ambiguous_long_only_values_are_refused(tmp_path: Path, value: str) -> None:
    assert "CLM_LONG_ONLY" in refused(env(tmp_path, CLM_LONG_ONLY=value))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLM_TRAIN_DAYS", "ninety"),
        ("CLM_EVAL_DAYS", "14.5"),
        ("CLM_LABEL_HORIZON", ""),
        ("CLM_MODEL_SEED", "0x1"),
        ("CLM_SYNTHETIC_SEED", "seven"),
        ("CLM_EXCHANGE_RETRIES", "5 retries"),
        ("CLM_FEE_BPS", "10bps"),
        ("CLM_SLIPPAGE_BPS", "nan"),
        ("CLM_LOCK_TIMEOUT_S", "inf"),
    ],
)
def test_a_number_that_does_not_parse_names_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    message = refused(env(tmp_path, **{variable: value}))
    assert variable in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLM_TRAIN_DAYS", "0"),
        ("CLM_EVAL_DAYS", "-1"),
        ("CLM_FEE_BPS", "-5"),
        ("CLM_SLIPPAGE_BPS", "-0.1"),
        ("CLM_LOCK_TIMEOUT_S", "0"),
        ("CLM_EXCHANGE_RETRIES", "-1"),
    ],
)
def test_a_number_out_of_range_names_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    assert variable in refused(env(tmp_path, **{variable: value}))


@given(st.integers(min_value=1, max_value=10_000), st.floats(0, 1000, allow_nan=False))
def test_numbers_round_trip(days: int, fee: float) -> None:
    settings = Settings.from_env(
        {
            "CLM_TRAIN_DAYS": f" {days} ",
            "CLM_FEE_BPS": repr(fee),
            "CLM_DB_PATH": "/tmp/clm-settings.duckdb",
        }
    )
    assert (settings.train_days, settings.fee_bps) == (days, fee)


def test_start_after_end_is_refused_naming_both(tmp_path: Path) -> None:
    message = refused(env(tmp_path, CLM_START_DATE="2019-01-01", CLM_END_DATE="2018-06-01"))
    assert "CLM_START_DATE" in message and "CLM_END_DATE" in message
    assert "2019-01-01" in message and "2018-06-01" in message


def test_start_equal_to_end_is_refused(tmp_path: Path) -> None:
    message = refused(env(tmp_path, CLM_START_DATE="2018-06-01", CLM_END_DATE="2018-06-01"))
    assert "CLM_START_DATE" in message


def test_a_start_in_the_future_without_an_end_is_refused(tmp_path: Path) -> None:
    message = refused(
        env(tmp_path, CLM_SOURCE="synthetic", CLM_START_DATE="2999-01-01", CLM_END_DATE="")
    )
    assert "CLM_START_DATE" in message


@pytest.mark.parametrize("variable", ["CLM_START_DATE", "CLM_END_DATE"])
@pytest.mark.parametrize("value", ["not-a-date", "2018-13-01", "01/02/2018", "2018-06-01T05"])
def test_a_date_that_does_not_parse_names_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    message = refused(env(tmp_path, **{variable: value}))
    assert variable in message and repr(value) in message
    assert "YYYY-MM-DD" in message


@pytest.mark.parametrize(
    "value",
    [
        "{not json",
        "[1, 2]",
        '{"xgboost": 3}',
        '{"xgboost": [1]}',
        "null",
    ],
)
def test_malformed_model_params_are_refused(tmp_path: Path, value: str) -> None:
    message = refused(env(tmp_path, CLM_MODEL_PARAMS=value))
    assert "CLM_MODEL_PARAMS" in message


def test_model_params_of_an_unknown_family_are_refused(tmp_path: Path) -> None:
    message = refused(env(tmp_path, CLM_MODEL_PARAMS=json.dumps({"xgbost": {"max_depth": 2}})))
    assert "CLM_MODEL_PARAMS" in message and "xgbost" in message


def test_well_formed_model_params_are_kept(tmp_path: Path) -> None:
    params = {"xgboost": {"max_depth": 2}, "nhits": {"max_steps": 10}}
    settings = Settings.from_env(env(tmp_path, CLM_MODEL_PARAMS=json.dumps(params)))
    assert settings.model_params == params


def test_a_database_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    message = refused({"CLM_DB_PATH": str(tmp_path)})
    assert "CLM_DB_PATH" in message and str(tmp_path) in message
    assert "directory" in message


def test_a_database_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "not-a-folder"
    parent.write_text("x")
    path = parent / "clm.duckdb"
    message = refused({"CLM_DB_PATH": str(path)})
    assert "CLM_DB_PATH" in message and str(parent) in message


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_database_path_where_nothing_can_be_created_is_refused() -> None:
    """sysfs refuses to create files even for root (chmod would not stop root)."""
    message = refused({"CLM_DB_PATH": "/sys/kernel/clm.duckdb"})
    assert "CLM_DB_PATH" in message and "/sys/kernel" in message
    assert not Path("/sys/kernel/clm.duckdb").exists()


def test_a_database_path_in_a_missing_folder_is_allowed(tmp_path: Path) -> None:
    """``data/`` does not exist in a fresh clone: the store creates it on first write."""
    settings = Settings.from_env({"CLM_DB_PATH": str(tmp_path / "data" / "clm.duckdb")})
    assert settings.db_path == tmp_path / "data" / "clm.duckdb"
    assert not (tmp_path / "data").exists()
