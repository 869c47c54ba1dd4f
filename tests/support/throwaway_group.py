"""A consumer-group module for runtime tests: `python -m outbox.runner tests.support.throwaway_group`.

Group, topic, table and database URL come from the environment, so each test runs a group of its own in a
process of its own and never disturbs the stack's consumers:

    THROWAWAY_GROUP         the Kafka consumer group (also the inbox's consumer_group)
    THROWAWAY_TOPIC         the one topic it reads
    THROWAWAY_TABLE         a table (event_id uuid, customer_id varchar(36)) in the customer database that gets
                            one row per event applied; a customer id too long for it is a database rejection,
                            as in customer_stats
    THROWAWAY_DATABASE_URL  optional; default: the customer database (a test may point it at a fault proxy)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

import apps.order.events  # noqa: F401  (registers order.created, which the handler names)
from apps.common.topology import BY_NAME
from apps.common.topology import database_url as topology_database_url
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

GROUP = os.environ.get("THROWAWAY_GROUP", "throwaway")
TOPIC = os.environ.get("THROWAWAY_TOPIC", "throwaway")
TABLE = os.environ.get("THROWAWAY_TABLE", "throwaway_applied")

group = ConsumerGroup(GROUP, topic_override=[TOPIC])
projection_tables = (TABLE,)


def database_url() -> str:
    return os.environ.get("THROWAWAY_DATABASE_URL") or topology_database_url(BY_NAME["customer"])


@group.handler("order.created")
async def record(session: AsyncSession, event: Any, ctx: EventContext) -> None:
    await session.execute(
        text(f'INSERT INTO "{TABLE}" (event_id, customer_id) VALUES (:id, :customer)'),
        {"id": ctx.event_id, "customer": event.customer_id},
    )
