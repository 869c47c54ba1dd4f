"""The settings base (apps/common/settings.py): typed values from the environment, the defaults when a
variable is unset, and a bad value that stops the start naming its variable."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.common.settings import SettingError, Settings, env, forget_settings, once


@dataclass(frozen=True, slots=True)
class Example(Settings):
    pool_size: int = env("EXAMPLE_POOL_SIZE", 25)
    timeout_s: float = env("EXAMPLE_TIMEOUT_S", 2.0)
    name: str = env("EXAMPLE_NAME", "sandbox")
    api_key: str | None = env("EXAMPLE_API_KEY", None)
    retention_days: int = 30  # a constant beside the settings: no variable


def test_unset_variables_keep_their_defaults() -> None:
    assert Example.from_env({}) == Example() == Example(25, 2.0, "sandbox", None, 30)


def test_good_values_are_read_as_their_fields_types() -> None:
    read = Example.from_env(
        {"EXAMPLE_POOL_SIZE": "4", "EXAMPLE_TIMEOUT_S": "0.5", "EXAMPLE_NAME": "acme", "EXAMPLE_API_KEY": "k"}
    )
    assert read == Example(4, 0.5, "acme", "k", 30)
    assert isinstance(read.pool_size, int) and isinstance(read.timeout_s, float)
    assert Example.from_env({"EXAMPLE_TIMEOUT_S": "3"}).timeout_s == 3.0  # an integer is a number too


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EXAMPLE_POOL_SIZE", "abc", "EXAMPLE_POOL_SIZE='abc': not an integer"),
        ("EXAMPLE_POOL_SIZE", "2.5", "EXAMPLE_POOL_SIZE='2.5': not an integer"),
        ("EXAMPLE_TIMEOUT_S", "", "EXAMPLE_TIMEOUT_S='': not a number"),
        ("EXAMPLE_TIMEOUT_S", "2s", "EXAMPLE_TIMEOUT_S='2s': not a number"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingError) as raised:
        Example.from_env({variable: value})
    assert str(raised.value) == message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no int() traceback under it


def test_variables_lists_each_variable_with_its_default() -> None:
    assert Example.variables() == {
        "EXAMPLE_POOL_SIZE": 25,
        "EXAMPLE_TIMEOUT_S": 2.0,
        "EXAMPLE_NAME": "sandbox",
        "EXAMPLE_API_KEY": None,
    }


def test_a_type_the_environment_cannot_give_is_refused_when_read() -> None:
    @dataclass(frozen=True, slots=True)
    class Odd(Settings):
        items: tuple[str, ...] = env("EXAMPLE_ITEMS", ())

    with pytest.raises(TypeError, match="EXAMPLE_ITEMS"):
        Odd.from_env({})


def test_once_reads_the_environment_once_until_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = once(Example)
    monkeypatch.setenv("EXAMPLE_POOL_SIZE", "7")
    first = settings()
    monkeypatch.setenv("EXAMPLE_POOL_SIZE", "8")
    assert settings() is first and first.pool_size == 7
    forget_settings()
    assert settings().pool_size == 8


def test_a_service_app_does_not_start_with_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_service_app reads the service's settings: the start fails there, naming the variable."""
    from apps.warehouse.app import create_app

    monkeypatch.setenv("WAREHOUSE_DEPENDENCY_TIMEOUT_S", "two")
    forget_settings()
    with pytest.raises(SettingError, match="WAREHOUSE_DEPENDENCY_TIMEOUT_S='two': not a number"):
        create_app()
