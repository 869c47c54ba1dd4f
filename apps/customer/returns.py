"""Returns in customer_stats: return.refunded counts a return and its refunded amount for the customer in
the refund's currency, and takes that amount off that currency's ``spent`` (what the customer spent net of
refunds; docs/decisions.md, Returns). Applied once per event (the customer-stats group's inbox); the fold below is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.common.projections import add_deltas
from apps.returns.events import ReturnRefunded

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["ReturnsDelta", "fold_refunds", "register"]


@dataclass
class ReturnsDelta:
    returns: int = 0
    refunded: Decimal = field(default_factory=lambda: Decimal("0.00"))


def fold_refunds(events: Iterable[ReturnRefunded]) -> dict[tuple[str, str], ReturnsDelta]:
    deltas: dict[tuple[str, str], ReturnsDelta] = {}
    for ev in events:
        # The refund's currency as the payment reported it, in capitals as the order's (analytics does the same).
        delta = deltas.setdefault((ev.customer_id, ev.currency.upper()), ReturnsDelta())
        delta.returns += 1
        delta.refunded += ev.amount
    return deltas


_APPLY: Final = text(
    """
    INSERT INTO customer_stats AS s (customer_id, currency, orders_count, cancelled_count, spent, returns_count,
                                     refunded)
    SELECT c, k, 0, 0, -r, n, r
    FROM unnest(CAST(:customer_id AS varchar[]), CAST(:currency AS varchar[]), CAST(:returns AS int[]),
                CAST(:refunded AS numeric[])) AS d(c, k, n, r)
    ON CONFLICT (customer_id, currency) DO UPDATE SET
        returns_count = s.returns_count + excluded.returns_count,
        refunded = s.refunded + excluded.refunded,
        spent = s.spent - excluded.refunded,
        updated_at = now()
    """
)


async def apply_refunds(session: AsyncSession, items: Sequence[tuple[ReturnRefunded, EventContext]]) -> None:
    await add_deltas(session, _APPLY, ["customer_id", "currency"], fold_refunds(event for event, _ in items))


def register(group: ConsumerGroup) -> None:
    """Add return.refunded to the customer-stats consumer group."""
    group.batch_handler("return.refunded")(apply_refunds)
