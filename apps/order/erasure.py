"""customer.erased in the order service (group order-references, which reads commerce.customer already).

The customer leaves the read model of known customers, so placing an order asks the customer API again,
which answers 404 for an erased customer (422 to the caller). Their orders stay, with their lines, money,
status history and payment state, but without the person: shipping and billing addresses and notes go
(NULL), in live and archived orders alike, and so does the card's provider token of every saga that is
over (a saga still waiting on a payment keeps it until it ends). The order's country is not kept apart:
nothing reads it after the order is placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.common.erasure import register_erasure, statements_erasure

if TYPE_CHECKING:
    from outbox.consumer import ConsumerGroup

__all__ = ["CUSTOMER_LOCK_KEY", "erase_customer", "register"]

_PERSONAL: Final = "shipping_address IS NOT NULL OR billing_address IS NOT NULL OR notes IS NOT NULL"
# One advisory key per customer (the two-int4 form: a key space apart from the migrations' bigint key) that
# orders placed from the read models share and the erasure takes alone (session 31, S). An order placed
# while this transaction ran read the known-customer row as it was before it, and committed after the UPDATE
# below had taken its snapshot: it kept its address for good. The erasure now waits for placements holding
# the key (their orders committed, so its UPDATEs see them), and a placement finding the key taken reads the
# customer as unknown and asks the customer API (404 once erased: 422). A try-lock on the placement's side:
# no wait and no WAL on the order path; a hash shared with another customer only sends an order to the API.
ERASURE_LOCK_CLASS: Final = 0x0E5A
CUSTOMER_LOCK_KEY: Final = f"{ERASURE_LOCK_CLASS}, hashtext(CAST(:customer_id AS text))"
# Each statement leaves nothing for a second run to change (idempotent under replay).
STATEMENTS: Final = (
    text(f"SELECT pg_advisory_xact_lock({CUSTOMER_LOCK_KEY})"),
    text("DELETE FROM order_known_customers WHERE customer_id = :customer_id"),
    text(
        "UPDATE orders SET shipping_address = NULL, billing_address = NULL, notes = NULL, updated_at = now() "
        f"WHERE customer_id = :customer_id AND ({_PERSONAL})"
    ),
    text(
        "UPDATE orders_archive SET shipping_address = NULL, billing_address = NULL, notes = NULL "
        f"WHERE customer_id = :customer_id AND ({_PERSONAL})"
    ),
    text(
        "UPDATE order_sagas AS s SET payment_token = NULL, updated_at = now() FROM orders AS o "
        "WHERE o.id = s.order_id AND o.customer_id = :customer_id AND s.step = 'done' AND s.payment_token IS NOT NULL"
    ),
    text(
        "UPDATE order_sagas_archive AS s SET payment_token = NULL FROM orders_archive AS o "
        "WHERE o.id = s.order_id AND o.customer_id = :customer_id AND s.payment_token IS NOT NULL"
    ),
)

erase_customer = statements_erasure(STATEMENTS)


def register(group: ConsumerGroup) -> None:
    register_erasure(group, erase_customer)
