"""The CPU priority classes: every component has the class its role says, and the environment overrides a nice."""

from __future__ import annotations

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not locked

from infra import priority, stack
from infra.paths import REPO


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("postgres", "request"),
        ("redis", "request"),
        ("order-api", "request"),
        ("payment-sandbox", "request"),  # the payment service calls it while a client waits
        ("kafka", "pipeline"),
        ("connect", "pipeline"),
        ("customer-consumer", "pipeline"),
        ("order-references", "pipeline"),
        ("payment-worker", "pipeline"),
        ("order-sweeper", "pipeline"),
        ("replica", "background"),
        ("prometheus", "background"),
        ("jobs", "background"),
        ("some-future-thing", "request"),  # unknown: the nice 0 it would have without the policy
    ],
)
def test_each_component_has_its_roles_class(component: str, expected: str) -> None:
    assert priority.class_of(component).name == expected


def test_every_named_component_exists() -> None:
    """A typo in the table would silently leave a component at the default class."""
    named = set(priority.BY_COMPONENT) - {"first-backup"}  # a one-off process, not a `just start` component
    assert named <= set(stack.components()), named - set(stack.components())


def test_the_environment_overrides_a_class_nice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert priority.PIPELINE.nice() == priority.PIPELINE.default_nice
    monkeypatch.setenv("STACK_NICE_PIPELINE", "5")
    assert priority.class_of("kafka").nice() == 5


def test_the_request_path_is_never_below_the_rest() -> None:
    assert priority.REQUEST.nice() <= min(priority.PIPELINE.nice(), priority.BACKGROUND.nice())


def test_compose_gives_each_container_its_class_weight() -> None:
    """infra/compose.yaml runs the same policy as cgroup weights (cpu_shares) instead of autogroup nices."""
    services = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        assert service["cpu_shares"] == priority.cpu_weight(priority.class_of(name).default_nice), name
    assert priority.cpu_weight(0) == 1024 and priority.cpu_weight(10) == 110
