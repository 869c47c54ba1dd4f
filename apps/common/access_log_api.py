"""Reading ``data_access_log``: a person's rows in one service, and across every service that holds their data.

- ``GET /api/internal/access-log?customer_id=&cursor=&limit=`` (order, checkout, returns): that service's
  rows about one person, newest first; service-only (``<service>:access-log``, which the customer
  service's token holds).
- ``GET /api/customers/{id}/access-log?cursor=&limit=`` (customer service): its own rows plus those of the
  three services above, merged newest first. Staff and admin read anyone's; a customer only their own (the
  GDPR right of access), another customer's id is a 404. A service that does not answer is a 503 naming it.

Pages are keyset pages over (accessed_at, id) with the project's cursor (apps/common/pagination.py): every
service orders its rows the same way and ids are unique UUIDv7s, so asking each for the page after the same
cursor and merging gives exactly the global page.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Final

import msgspec
import sqlalchemy as sa
from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.access_log import ACCESS_LOG_TABLE
from apps.common.auth import allow
from apps.common.pagination import Cursor, decode_cursor, encode_cursor
from apps.common.service_client import ServiceClient, open_service_client

__all__ = [
    "AccessLogEntry",
    "AccessLogPage",
    "CustomerAccessLogController",
    "internal_access_log_controller",
    "read_access_log",
]

# The services whose rows the customer service gathers (each has the internal route).
PEERS: Final = ("order", "checkout", "returns")
PEER_TIMEOUT_S: Final = 3.0
Limit = Annotated[int, Parameter(ge=1, le=200, description="rows per page, 1..200")]

_TABLE: Final = sa.table(
    ACCESS_LOG_TABLE,
    sa.column("id", sa.Uuid),
    sa.column("user_id", sa.String),
    sa.column("table_name", sa.String),
    sa.column("operation", sa.String),
    sa.column("record_id", sa.String),
    sa.column("customer_id", sa.String),
    sa.column("accessed_at", sa.DateTime(timezone=True)),
)


class AccessLogEntry(msgspec.Struct, kw_only=True):
    """Who (``user_id``: "staff:<sub>", "customer:<id>", "service:<name>", "anonymous") did what to which record."""

    id: uuid.UUID
    service: str
    user_id: str
    table_name: str
    operation: str
    record_id: str | None
    accessed_at: dt.datetime


class AccessLogPage(msgspec.Struct, kw_only=True):
    items: list[AccessLogEntry]
    next_cursor: str | None


async def read_access_log(
    session: AsyncSession, service: str, customer_id: uuid.UUID, *, limit: int, cursor: str | None
) -> AccessLogPage:
    """This service's rows about one person, newest first, one page."""
    return _page(await _rows_after(session, service, customer_id, limit + 1, cursor), limit)


async def _rows_after(
    session: AsyncSession, service: str, customer_id: uuid.UUID, count: int, cursor: str | None
) -> list[AccessLogEntry]:
    c = _TABLE.c
    query = sa.select(_TABLE).where(c.customer_id == str(customer_id))
    if cursor:
        accessed_at, last_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(c.accessed_at, c.id) < sa.tuple_(sa.literal(accessed_at), sa.literal(last_id)))
    query = query.order_by(c.accessed_at.desc(), c.id.desc()).limit(count)
    rows = (await session.execute(query)).mappings().all()
    return [
        AccessLogEntry(
            id=r["id"],
            service=service,
            user_id=r["user_id"],
            table_name=r["table_name"],
            operation=r["operation"],
            record_id=r["record_id"],
            accessed_at=r["accessed_at"],
        )
        for r in rows
    ]


def _page(entries: list[AccessLogEntry], limit: int, *, peers_hold_more: bool = False) -> AccessLogPage:
    entries.sort(key=lambda e: (e.accessed_at, e.id), reverse=True)
    page = entries[:limit]
    more = len(entries) > limit or (peers_hold_more and bool(page))
    return AccessLogPage(items=page, next_cursor=encode_cursor(page[-1].accessed_at, page[-1].id) if more else None)


def internal_access_log_controller(service: str) -> type[Controller]:
    """The service-only route of ``service`` (one line in its app.py's controllers)."""

    class InternalAccessLogController(Controller):
        path = "/api/internal/access-log"
        tags = ["internal"]

        @get(guards=[allow(service=f"{service}:access-log")])
        async def internal_access_log(
            self, db_session: AsyncSession, customer_id: uuid.UUID, cursor: Cursor = None, limit: Limit = 50
        ) -> AccessLogPage:
            """This service's data_access_log rows about one person, newest first (for the customer service)."""
            return await read_access_log(db_session, service, customer_id, limit=limit, cursor=cursor)

    return InternalAccessLogController


async def _peer_page(service: str, customer_id: uuid.UUID, limit: int, cursor: str | None) -> AccessLogPage:
    query = f"customer_id={customer_id}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    async with open_service_client(service, timeout_s=PEER_TIMEOUT_S, pool_size=1) as session:
        client = ServiceClient(service, session)
        status, content = await client.get(f"/api/internal/access-log?{query}")
        return client.decode(status, content, AccessLogPage)


class CustomerAccessLogController(Controller):
    """``GET /api/customers/{id}/access-log``: every service's rows about one person."""

    path = "/api/customers"
    tags = ["customers"]

    @get(
        "/{customer_id:uuid}/access-log",
        guards=[allow("customer", "staff", own="customer_id")],
    )
    async def customer_access_log(
        self, db_session: AsyncSession, customer_id: uuid.UUID, cursor: Cursor = None, limit: Limit = 50
    ) -> AccessLogPage:
        """Who read or changed this person's data, in every service that holds it, newest first; a page
        of ``limit`` rows, ``next_cursor`` for the next. Staff, admin, and the customer themselves."""
        # limit + 1 of our own rows; a peer answers at most ``limit`` (the largest page it accepts) and says
        # with its next_cursor whether it holds more, older than every row it sent.
        own = _rows_after(db_session, "customer", customer_id, limit + 1, cursor)
        peers = [_peer_page(s, customer_id, limit, cursor) for s in PEERS]
        own_rows, peer_pages = await asyncio.gather(own, asyncio.gather(*peers))
        entries = own_rows + [entry for page in peer_pages for entry in page.items]
        return _page(entries, limit, peers_hold_more=any(page.next_cursor for page in peer_pages))
