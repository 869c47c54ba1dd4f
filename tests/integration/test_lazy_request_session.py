"""POST /api/orders makes the request's SQLAlchemy session only when something uses it (apps/common/db.py
LazySession): never for a placement, which sends its statements on a pooled connection of its own; a replay
of an Idempotency-Key reads the earlier order through it, and that session is closed like any other."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.datastructures import State
from litestar.testing import AsyncTestClient
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession

from apps.order.app import create_app
from tests.support.http import authorized, create_customer, create_product

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request session made (advanced-alchemy's provide_session, which the lazy session calls)."""
    sessions: list[Any] = []
    real = SQLAlchemyAsyncConfig.provide_session

    # Litestar reads this signature (the plugin's db_session dependency of the other routes): real types.
    def provide_session(self: SQLAlchemyAsyncConfig, state: State, scope: Scope) -> AsyncSession:
        session = real(self, state, scope)
        sessions.append(session)
        return session

    monkeypatch.setattr(SQLAlchemyAsyncConfig, "provide_session", provide_session)
    return sessions


@pytest.fixture
async def client(made: list[Any]) -> AsyncIterator[AsyncTestClient[Any]]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


async def test_a_placement_makes_no_session_and_a_replay_makes_one_that_is_closed(
    client: AsyncTestClient[Any], made: list[Any]
) -> None:
    customer, product = await create_customer(), await create_product("3.00")
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    key = str(uuid.uuid4())

    placed = await client.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    assert placed.status_code == 201, placed.text
    assert made == []

    replayed = await client.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == placed.json()["id"]
    assert len(made) == 1
    # Closed once the answer started (apps/common/db.py session_closer): no transaction, no objects held.
    assert not made[0].sync_session.in_transaction() and not made[0].sync_session.identity_map
