"""The seed's ``data_access_log``: who read or changed a person's record, in every service holding personal data.

A service's ``models.py`` maps the table with one line::

    class DataAccessLog(DataAccessLogMixin, Base): ...

and its service layer says what the caller touched::

    await log_access(session, "customers", "UPDATE", [Touched(customer.id, customer.id)])   # before commit
    note_read("orders", [Touched(o.id, o.customer_id) for o in page])                        # no I/O

A change is one INSERT in the change's own transaction (the service commits after it), so a change that
fails leaves no row. Reads are noted in the request and written together, one INSERT committed on the
request's primary session, when the answer starts and before it is sent (only for an answer below 400:
a read refused afterwards, e.g. another customer's order answered 404, showed nothing); ORM changes the
handler left uncommitted are rolled back first, so that commit carries nothing else, and it does not wait
for the WAL flush (``synchronous_commit`` off for it: a crash right after may lose a read's rows, never a
change's; under a 20-way burst of customer reads this halved the cost). Reads may come
from the replica; their rows always go to the primary. If that INSERT fails the answer still goes out,
logged and counted in ``commerce_access_log_failures_total``: availability first, and the failure is seen.

The caller (``user_id``) is ``apps.common.auth.actor_id`` of the request's principal, never an email; the
``AccessLogContextPlugin`` keeps the request in a context variable, so the service layer needs no request
argument. Outside a request (consumers, jobs) ``note_read`` does nothing and changes are logged as
"anonymous" unless an ``actor`` is given.

Beyond the seed: ``customer_id``, the person the record belongs to (a customer id, or a guest's checkout
session id), so that ``GET /api/customers/{id}/access-log`` finds every row about a person without
joining records that may since have been archived or anonymised. Kept ``ACCESS_LOG_RETENTION_DAYS``
(730) days: the ``jobs`` process deletes older rows (``access-log-retention``).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from advanced_alchemy.extensions.litestar._utils import get_aa_scope_state
from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPluginProtocol
from prometheus_client import Counter
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from apps.common.auth import actor_id, principal_of
from apps.common.db import in_autocommit
from apps.common.models import utc_now
from apps.common.settings import Settings, env, once

if TYPE_CHECKING:
    from litestar.config.app import AppConfig
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ACCESS_LOG_SERVICES",
    "ACCESS_LOG_TABLE",
    "PURGE_SQL",
    "AccessLogContextPlugin",
    "AccessLogSettings",
    "DataAccessLogMixin",
    "Operation",
    "Touched",
    "change_row",
    "create_data_access_log_v1",
    "current_actor",
    "drop_data_access_log_v1",
    "log_access",
    "note_read",
    "reads_noted",
    "retention_days",
]

ACCESS_LOG_TABLE: Final = "data_access_log"
Operation = Literal["SELECT", "INSERT", "UPDATE", "DELETE"]
ANONYMOUS: Final = "anonymous"

log = logging.getLogger("apps.access_log")
FAILURES = Counter("commerce_access_log_failures", "Reads whose data_access_log rows could not be written")


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


# The services whose databases hold the table (those that hold personal data).
ACCESS_LOG_SERVICES: Final = ("customer", "order", "checkout", "returns")
PURGE_SQL: Final = sa.text(
    f"DELETE FROM {ACCESS_LOG_TABLE} WHERE id IN (SELECT id FROM {ACCESS_LOG_TABLE} WHERE accessed_at < :cutoff "
    "LIMIT :batch FOR UPDATE SKIP LOCKED)"
)


@dataclass(frozen=True, slots=True)
class AccessLogSettings(Settings):
    # At most ten years: the longest a law asks such records kept (bookkeeping); more is not retention.
    retention_days: int = env("ACCESS_LOG_RETENTION_DAYS", 730, minimum=1, maximum=3650)


access_log_settings = once(AccessLogSettings)


def retention_days() -> int:
    """How long rows are kept (``ACCESS_LOG_RETENTION_DAYS``, default two years); the jobs process deletes
    older ones (infra/jobs.py, ``access-log-retention``) with ``PURGE_SQL``, in batches. Read once per
    process, at its first call: a value that is not a whole number fails that run naming the variable."""
    return access_log_settings().retention_days


# --- who is calling, and the reads of this request ----------------------------------------------------


class _Request:
    """What the current request has read so far, and where to write it."""

    __slots__ = ("reads", "scope", "session_key")

    def __init__(self, scope: Scope, session_key: str) -> None:
        self.scope = scope
        self.session_key = session_key
        self.reads: list[tuple[str, Touched]] = []


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("access_log_request", default=None)


class _RequestContextMiddleware(ASGIMiddleware):
    """Keeps the request in a context variable for the handler's task, and writes its reads (one INSERT)
    when the answer starts, before passing the start on."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        current = _Request(scope, self.session_key)
        token = _current.set(current)

        async def send_after_logging_reads(message: Message) -> None:
            if message["type"] == "http.response.start" and current.reads and message["status"] < 400:
                await _write_reads(current)
            await send(message)

        try:
            await next_app(scope, receive, send_after_logging_reads)
        finally:
            _current.reset(token)


class AccessLogContextPlugin(InitPluginProtocol):
    """Wires the request context that ``current_actor`` and ``note_read`` use."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(_RequestContextMiddleware(_session_scope_key(app_config)))
        return app_config


def _session_scope_key(app_config: AppConfig) -> str:
    """Where advanced-alchemy keeps the request's (primary) session in the scope."""
    for plugin in app_config.plugins:
        config = getattr(plugin, "config", None)
        for one in config if isinstance(config, list | tuple) else [config]:
            key = getattr(one, "session_scope_key", None)
            if isinstance(key, str):
                return key
    return "_sqlalchemy_db_session"


def current_actor() -> str:
    """``actor_id`` of the current request's principal; "anonymous" outside a request or for a guest."""
    current = _current.get()
    return ANONYMOUS if current is None else actor_id_of(current.scope)


def note_read(table: str, touched: Iterable[Touched]) -> None:
    """Records read by this request, written together before its answer (see the module docstring)."""
    current = _current.get()
    if current is not None:
        current.reads.extend((table, t) for t in touched)


def reads_noted() -> int:
    """Records the current request has noted so far: what its access-log write will hold (the read budget
    charges them, apps/common/rate_limit.py)."""
    current = _current.get()
    return 0 if current is None else len(current.reads)


_ASYNC_COMMIT: Final = sa.text("SET LOCAL synchronous_commit TO OFF")


async def _write_reads(current: _Request) -> None:
    session: AsyncSession | None = get_aa_scope_state(current.scope, current.session_key)
    actor = actor_id_of(current.scope)
    rows = [row for table, t in current.reads for row in _rows(actor, table, "SELECT", [t])]
    current.reads.clear()
    try:
        if session is None:
            raise LookupError("the request has no primary session")  # a read that used none: a bug of ours
        if session.new or session.dirty or session.deleted:
            # Nothing commits behind the handler's back: what it changed and left uncommitted is dropped,
            # so this commit holds the access-log rows and nothing else (autoflush is off: an ORM change
            # is pending until the service commits it; read paths run no DML of their own).
            await session.rollback()
        # A read's rows need not wait for the WAL flush (the answer waits on this commit): a crash in the
        # next fraction of a second may lose them. A change's row is committed with the change, durably.
        if not in_autocommit(session):  # (in autocommit the INSERT commits alone, durably)
            await session.execute(_ASYNC_COMMIT)
        await session.execute(sa.insert(_INSERT), rows)  # one statement (insertmanyvalues), cached
        await session.commit()
    except Exception as exc:  # the answer is decided; a lost audit row is logged and counted, not a 500
        FAILURES.inc()
        log.warning("data_access_log rows not written", extra={"rows": len(rows), "error": type(exc).__name__})


def actor_id_of(scope: Scope) -> str:
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


def change_row(table: str, operation: Operation, touched: Touched, *, actor: str | None = None) -> dict[str, Any]:
    """The one row ``log_access`` would insert for a change, for a service whose change is a single
    statement that writes the row itself (the order's placement, apps/order/transitions.py): the row then
    commits with the change as surely as ``log_access`` before the commit makes it."""
    return _rows(actor or current_actor(), table, operation, [touched])[0]


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
    await session.execute(sa.insert(_INSERT), rows)  # one statement (insertmanyvalues), cached
    if commit_read:
        await session.commit()
