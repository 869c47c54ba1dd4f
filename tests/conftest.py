"""Test session set-up: the real stack is started once (idempotently) for integration and e2e tests."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for layer in ("unit", "integration", "e2e"):
            if f"/tests/{layer}/" in path:
                item.add_marker(getattr(pytest.mark, layer))
    # Tests that rewind the shared stack (a point-in-time recovery) run after every other test.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def stack() -> None:
    """PostgreSQL, Redis, Kafka, Connect, migrations, connectors and services: up once per session."""
    from infra import stack as local_stack

    local_stack.up()
