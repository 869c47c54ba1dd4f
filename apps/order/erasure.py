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

__all__ = ["erase_customer", "register"]

_PERSONAL: Final = "shipping_address IS NOT NULL OR billing_address IS NOT NULL OR notes IS NOT NULL"
# Each statement leaves nothing for a second run to change (idempotent under replay).
STATEMENTS: Final = (
    # The known-customer row becomes a tombstone (session 31, X), inserted when the customer was never known
    # here, and is never deleted:
    # - an order placed meanwhile reads the row FOR SHARE (apps/order/known.py _LOOKUP_SQL). One that locked
    #   it first holds this statement until its order has committed, so the UPDATEs below (each statement a
    #   new snapshot) see that order. One reaching the row after this statement waits for this transaction,
    #   and its locked read then re-checks the row's newest version (EvalPlanQual), whatever its statement's
    #   snapshot: the customer reads as unknown and the customer API answers (404 once erased: 422). An
    #   advisory key tried inside the statement (30ea300) was read with the statement's snapshot, taken before
    #   the erasure committed: the row still read as known.
    # - the order API's write-back of a customer the customer API answered for just before the erasure
    #   (INSERT ... ON CONFLICT DO NOTHING, which sees committed rows whatever the snapshot) finds the
    #   tombstone and writes nothing: a deleted row was written back, and the erased customer's later orders
    #   kept their addresses.
    text(
        "INSERT INTO order_known_customers AS k (customer_id, erased) VALUES (:customer_id, true) "
        "ON CONFLICT (customer_id) DO UPDATE SET erased = true WHERE NOT k.erased"
    ),
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
