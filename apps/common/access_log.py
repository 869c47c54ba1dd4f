"""The seed's ``data_access_log``: who read or changed a person's record, in every service holding personal data.

A service's ``models.py`` maps the table with one line::

    class DataAccessLog(DataAccessLogMixin, Base): ...

and its service layer says what the caller touched, on the request's session::

    await log_access(session, "customers", "UPDATE", [Touched(customer.id, customer.id)])   # before commit
    await log_access(session, "orders", "SELECT", [Touched(o.id, o.customer_id) for o in page])

One multi-row INSERT per call. A change logs in its own transaction (the service commits after it, so a
change that fails leaves no row); a read logs before the response and commits that row itself
(``commit_read=True``). The caller (``user_id``) is ``apps.common.auth.actor_id`` of the request's
principal, never an email; it is read from the request the ``AccessLogContextPlugin`` puts in a
context variable, so the service layer needs no request argument.

Beyond the seed: ``customer_id``, the person the record belongs to (a customer id, or a guest's checkout
session id), so that ``GET /api/customers/{id}/access-log`` finds every row about a person without
joining records that may since have been archived or anonymised. Kept ``ACCESS_LOG_RETENTION_DAYS``
(730) days by the ``jobs`` process (``outbox-retention``).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPluginProtocol
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from apps.common.models import utc_now

if TYPE_CHECKING:
    from litestar.config.app import AppConfig
    from litestar.types import ASGIApp, Receive, Scope, Send
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ACCESS_LOG_TABLE",
    "AccessLogContextPlugin",
    "DataAccessLogMixin",
    "Operation",
    "Touched",
    "create_data_access_log_v1",
    "current_actor",
    "drop_data_access_log_v1",
    "log_access",
    "retention_days",
]

ACCESS_LOG_TABLE: Final = "data_access_log"
Operation = Literal["SELECT", "INSERT", "UPDATE", "DELETE"]
ANONYMOUS: Final = "anonymous"

_request_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("access_log_scope", default=None)


class Touched(NamedTuple):
    """One record a caller read or changed, and the person it belongs to."""

    record_id: object
    customer_id: object | None


class DataAccessLogMixin:
    """The seed's columns, plus ``customer_id`` (whose record it was)."""

    __tablename__ = ACCESS_LOG_TABLE

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255))
    table_name: Mapped[str] = mapped_column(sa.String(100))
    operation: Mapped[str] = mapped_column(sa.String(20))
    record_id: Mapped[str | None] = mapped_column(sa.String(255))
    customer_id: Mapped[str | None] = mapped_column(sa.String(64))
    accessed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


def create_data_access_log_v1() -> None:
    """The table, for a service's own migration: the seed's columns plus customer_id, its two indexes."""
    from alembic import op

    op.create_table(
        ACCESS_LOG_TABLE,
        sa.Column("id", sa.Uuid, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("table_name", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("record_id", sa.String(255)),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("accessed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment="Who read or changed a person's record (apps/common/access_log.py); kept two years.",
    )
    # A person's rows, newest first (the access-log endpoint's keyset pages).
    op.create_index("ix_data_access_log_customer", ACCESS_LOG_TABLE, ["customer_id", "accessed_at", "id"])
    # Retention deletes by age; rows arrive in time order, so a BRIN index is tiny and cheap to keep.
    op.create_index("ix_data_access_log_accessed_at", ACCESS_LOG_TABLE, ["accessed_at"], postgresql_using="brin")


def drop_data_access_log_v1() -> None:
    from alembic import op

    op.drop_table(ACCESS_LOG_TABLE)


def retention_days() -> int:
    return int(os.environ.get("ACCESS_LOG_RETENTION_DAYS", "730"))


# --- who is calling ---------------------------------------------------------------------------------


class _RequestScopeMiddleware(ASGIMiddleware):
    """Keeps the request's scope in a context variable for the handler's task (the service layer)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _request_scope.set(scope)
        try:
            await next_app(scope, receive, send)
        finally:
            _request_scope.reset(token)


class AccessLogContextPlugin(InitPluginProtocol):
    """Wires the context variable that ``current_actor`` reads."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(_RequestScopeMiddleware())
        return app_config


def current_actor() -> str:
    """``actor_id`` of the current request's principal; "anonymous" outside a request or for a guest."""
    scope = _request_scope.get()
    if scope is None:
        return ANONYMOUS
    from litestar import Request

    from apps.common.auth import actor_id, principal_of

    return actor_id(principal_of(Request(scope)))


# --- writing rows -------------------------------------------------------------------------------------


def _rows(actor: str, table: str, operation: str, touched: Iterable[Touched]) -> list[dict[str, Any]]:
    now = utc_now()
    return [
        {
            "id": uuid7(),
            "user_id": actor,
            "table_name": table,
            "operation": operation,
            "record_id": None if t.record_id is None else str(t.record_id),
            "customer_id": None if t.customer_id is None else str(t.customer_id),
            "accessed_at": now,
        }
        for t in touched
    ]


_INSERT: Final = sa.table(
    ACCESS_LOG_TABLE,
    sa.column("id", sa.Uuid),
    sa.column("user_id"),
    sa.column("table_name"),
    sa.column("operation"),
    sa.column("record_id"),
    sa.column("customer_id"),
    sa.column("accessed_at", sa.DateTime(timezone=True)),
)


async def log_access(
    session: AsyncSession,
    table: str,
    operation: Operation,
    touched: Iterable[Touched],
    *,
    commit_read: bool = False,
    actor: str | None = None,
) -> None:
    """One INSERT of a row per record touched, in the session's transaction.

    A change: call before the service's commit, so the row and the change commit (or fail) together.
    A read: ``commit_read=True`` commits the row before the handler returns its answer.
    """
    rows = _rows(actor or current_actor(), table, operation, touched)
    if not rows:
        return
    await session.execute(sa.insert(_INSERT).values(rows))
    if commit_read:
        await session.commit()
