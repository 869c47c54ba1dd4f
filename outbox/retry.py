"""Which failures are transient (retry the batch with backoff) and which are the message's fault.

A consumer must outlive its database: refused connections, a server that is starting up or out of
connection slots, connections dropped mid-batch, deadlocks and serialization failures all end in a retry,
never in an exit or a dead letter. Connection-phase errors reach us in two shapes: wrapped by SQLAlchemy
(DBAPIError and subclasses, with the driver's error in ``orig``) or raw from the driver, because
SQLAlchemy's asyncpg dialect lets errors raised while *opening* a connection through unwrapped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from outbox.errors import ContentionError, RetryableError

__all__ = [
    "CONTENTION_SQLSTATES",
    "READ_ONLY_SQLSTATE",
    "RETRYABLE_SQLSTATES",
    "backoff_delay",
    "contended",
    "is_retryable",
    "waits_for",
]

# A transaction PostgreSQL refused for another's sake, not for what it asked: 40001 serialization_failure
# and 40P01 deadlock_detected roll it back, 55P03 lock_not_available (a lock_timeout or NOWAIT ran out)
# fails it. The database answered, and the same work is expected to pass once the other transaction ends:
# a consumer retries it without calling itself not ready at once, an HTTP request is a 503 with a short
# Retry-After (apps/common/error_handlers.py).
CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# 25006 read_only_sql_transaction: a write reached a server that takes none right now (a standby not yet
# promoted after a failover, default_transaction_read_only set by an operator). No event's fault: it lasts
# as long as the failover.
READ_ONLY_SQLSTATE = "25006"

# Contention (above), a server that takes no writes (above), a cancelled statement (57014: an operator's
# pg_cancel_backend, a statement_timeout; no event's fault, and the services' HTTP side answers it 503),
# admin/crash shutdown, "cannot connect now" (the server is starting up or shutting down), too many
# connections, out of memory/disk. Class 08 (connection exception) is retryable as a whole. Also an
# undefined table or column: the schema is behind the code (a deploy whose migration has not run yet, or
# one rolled back), which is no event's fault; dead-lettering would throw away every event until it is
# fixed, while a retry waits, and the lag alert says so.
RETRYABLE_SQLSTATES = CONTENTION_SQLSTATES | frozenset(
    {READ_ONLY_SQLSTATE, "57014", "57P01", "57P02", "57P03", "53300", "53200", "53100", "42P01", "42703"}
)


def is_retryable(exc: BaseException) -> bool:
    """True for a transient failure of the database or the network; False when the event is at fault."""
    return any(_transient(error) for error in _causes(exc))


def contended(exc: BaseException) -> bool:
    """True when the work was refused for a concurrent transaction's sake: by the database
    (CONTENTION_SQLSTATES) or by a handler that found it (outbox.errors.ContentionError)."""
    return any(isinstance(error, ContentionError) or _sqlstate(error) in CONTENTION_SQLSTATES for error in _causes(exc))


def waits_for(exc: BaseException) -> str:
    """What a retryable failure waits for: the dependency named along its causes (a RetryableError's
    ``dependency``, or an error of a service client's that carries one, e.g. "customer" for a 503 of the
    customer service), else "database".

    /ready said "database": false for any retry, so a customer-service outage read as the consumer's own
    database being down."""
    for error in _causes(exc):
        dependency = getattr(error, "dependency", None)
        if isinstance(dependency, str) and dependency:
            return dependency
    return "database"


def backoff_delay(attempt: int, cap: float) -> float:
    """Capped exponential backoff with jitter: 0.2 s, 0.4 s, ... up to ``cap`` (randomised down to half)."""
    return min(cap, 0.2 * 2.0 ** min(attempt, 10)) * random.uniform(0.5, 1.0)


def _transient(error: BaseException) -> bool:
    if isinstance(error, RetryableError | OSError | TimeoutError | PoolTimeout):
        return True  # OSError covers ConnectionRefusedError, ConnectionResetError and socket timeouts
    if isinstance(error, OperationalError | InterfaceError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    state = _sqlstate(error)
    return state is not None and (state in RETRYABLE_SQLSTATES or state.startswith("08"))


def _sqlstate(error: BaseException) -> str | None:
    # asyncpg errors carry `sqlstate`, psycopg's `pgcode`/`sqlstate`; SQLAlchemy wrappers only through `orig`.
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error, the driver error a SQLAlchemy wrapper holds, and what each was raised from."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen or len(seen) > 16:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, error.__cause__]
