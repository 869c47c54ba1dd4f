"""Reading an order that has been archived (orders older than two years; infra/archive.py moves them).

GET /api/orders/{id} looks here when ``orders`` no longer has the id. The archive tables have every
column of their live tables (migration order_0004; the archive job refuses otherwise), so the rows are
read into the same mapped classes, selecting the live columns by name, and then detached from the
session: they are answers, never rows to update (a change to an archived order is a 404 like before).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.models import ServiceBase

__all__ = ["archived"]

Row = TypeVar("Row", bound=ServiceBase)


async def archived(
    session: AsyncSession, model: type[Row], column: str, value: uuid.UUID, *, customer_id: str | None = None
) -> list[Row]:
    """The rows of ``model``'s archive table whose ``column`` is ``value`` (by id order), detached; with
    ``customer_id``, only that customer's (a customer's read: apps/common/auth.py ``read_owner``)."""
    columns = model.__table__.columns
    names = ", ".join(f'"{c.name}"' for c in columns)
    owned = "" if customer_id is None else " AND customer_id = :customer_id"
    order_by = " ORDER BY id" if "id" in columns and column != "id" else ""
    statement = text(f"SELECT {names} FROM {model.__tablename__}_archive WHERE {column} = :value{owned}{order_by}")
    bound: dict[str, object] = {"value": value} if customer_id is None else {"value": value, "customer_id": customer_id}
    rows: Sequence[Row] = (await session.scalars(select(model).from_statement(statement), bound)).all()
    for row in rows:
        session.expunge(row)
    return list(rows)
