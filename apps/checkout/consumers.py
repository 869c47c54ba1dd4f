"""The checkout consumer group: customer.erased -> the customer's checkout sessions, carts and cached
cart views anonymised (apps/checkout/erasure.py). Checkout publishes checkout.completed and consumes
nothing else. Run: ``python -m outbox.runner apps.checkout.consumers`` (the stack's checkout-consumer).
"""

from __future__ import annotations

from apps.checkout.erasure import register as register_erasure
from apps.common.consumer_db import consumer_database_url
from outbox.consumer import ConsumerGroup

# The database holding this group's inbox (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("checkout")
group = ConsumerGroup("checkout")
register_erasure(group)
# Nothing to rebuild: the group anonymises rows, it projects nothing.
projection_tables: tuple[str, ...] = ()
