"""customer.erased in the returns service (group returns): the customer's returns lose their free text.

A return keeps its order, items, reasons (codes), amounts and progress; what the customer wrote
(``description``) and the return label's URL (the label shows their address) become NULL. Staff names
(approved_by, processed_by) and the carrier's tracking number are not the customer's data.
order_snapshots keeps the customer's id only (no name, no address).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.common.erasure import register_erasure, statements_erasure

if TYPE_CHECKING:
    from outbox.consumer import ConsumerGroup

__all__ = ["erase_customer", "register"]

STATEMENTS: Final = (
    text(
        "UPDATE return_requests SET description = NULL, return_shipping_label_url = NULL, updated_at = now() "
        "WHERE customer_id = :customer_id AND (description IS NOT NULL OR return_shipping_label_url IS NOT NULL)"
    ),
)

erase_customer = statements_erasure(STATEMENTS)


def register(group: ConsumerGroup) -> None:
    register_erasure(group, erase_customer)
