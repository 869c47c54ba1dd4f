"""customer.erased in a consumer group: the handler every service's erasure module registers.

A service that keeps a copy of a person's data (addresses on orders and checkout sessions, a return's
free text, a read model of known customers) anonymises it when customer.erased arrives
(apps/customer/erasure.py publishes it). The group's inbox applies each event once; the service's
statements must be idempotent themselves too, because a replay (``just replay GROUP --to-earliest``)
applies the event again: each sets values that a second run leaves as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter

from apps.customer.events import CustomerErased

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["ERASURES", "Erase", "execute_for_customer", "register_erasure", "statements_erasure"]

ERASURES = Counter("commerce_erasures_applied", "customer.erased events applied, per consumer group", ["group"])

# Anonymise one customer's copies in the handler's transaction (the customer id as text, as stored).
Erase = Callable[["AsyncSession", str], Awaitable[None]]


def register_erasure(group: ConsumerGroup, erase: Erase) -> None:
    """Apply customer.erased in ``group`` with ``erase(session, customer_id)``."""

    async def customer_erased(session: AsyncSession, event: CustomerErased, ctx: EventContext) -> None:
        await erase(session, str(event.id))
        ERASURES.labels(group.name).inc()

    group.handler("customer.erased")(customer_erased)


async def execute_for_customer(session: AsyncSession, statements: Sequence[TextClause], customer_id: str) -> None:
    """Run each statement with ``:customer_id`` bound, in order, in the caller's transaction."""
    for statement in statements:
        await session.execute(statement, {"customer_id": customer_id})


def statements_erasure(statements: Sequence[TextClause]) -> Erase:
    """An ``Erase`` that runs ``statements`` (each binding ``:customer_id``) and nothing else."""

    async def erase(session: AsyncSession, customer_id: str) -> None:
        await execute_for_customer(session, statements, customer_id)

    return erase
