"""Test session set-up: the real stack is started once (idempotently) for integration and e2e tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from apps.common.settings import forget_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for layer in ("unit", "integration", "e2e"):
            if f"/tests/{layer}/" in path:
                item.add_marker(getattr(pytest.mark, layer))
    # Tests that rewind the shared stack (a point-in-time recovery) run after every other test.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> None:
    """PostgreSQL, Redis, Kafka, Connect, migrations, connectors and services: up once per session; what
    was down and what was left stopped said on the terminal (infra.stack.up_for_tests)."""
    from infra import stack as local_stack

    lines = local_stack.up_for_tests()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if lines:
            print("\n" + "\n".join(lines), flush=True)  # after pytest's progress dots, on lines of their own


@pytest.fixture(autouse=True)
def _settings_read_afresh() -> Iterator[None]:
    """A process reads its settings once (apps/common/settings.py); a test that set a variable must not
    leave its value cached for the next test."""
    yield
    forget_settings()
