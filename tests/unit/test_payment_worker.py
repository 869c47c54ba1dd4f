"""Unit test of the payment worker's loop: a database that fails, however it fails, is waited out."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from apps.payment.worker import Worker

pytestmark = pytest.mark.unit


class RestartingDatabase:
    """A session factory whose sessions fail the way asyncpg does while PostgreSQL shuts down."""

    def __call__(self) -> RestartingDatabase:
        return self

    async def __aenter__(self) -> Any:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_a_failing_database_makes_the_worker_unhealthy_not_dead() -> None:
    worker = Worker(RestartingDatabase(), provider=None)  # type: ignore[arg-type]
    worker.healthy = True
    assert await worker.round() == -1
    assert worker.healthy is False
