"""The order service's sealed columns: the addresses copied onto orders (and kept in orders_archive).

Sealed with the order service's keyring (``.stack/keys/order.json`` or ORDER_KEYRING_FILE) through
apps/common/sealed_addresses.py; rotation: ``just keys order rotate`` (apps/common/sealed_tables.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from apps.common.sealed_addresses import SealedAddresses

if TYPE_CHECKING:
    from apps.order.models import Order

__all__ = ["ADDRESSES", "SEALED_TABLES", "SERVICE", "keyring", "opened_addresses", "seal_addresses"]

SERVICE: Final = "order"
ADDRESSES: Final = SealedAddresses(SERVICE)
COLUMNS: Final = ("shipping_address", "billing_address")
# An archived order keeps the envelopes sealed for its row in orders: the associated data names "orders".
SEALED_TABLES: Final = (
    ADDRESSES.table("orders", COLUMNS),
    ADDRESSES.table("orders_archive", COLUMNS, aad_table="orders"),
)
keyring = ADDRESSES.keyring


def seal_addresses(order: Order) -> None:
    ADDRESSES.seal_row("orders", order, COLUMNS)


def opened_addresses(order: Order) -> dict[str, Any]:
    return ADDRESSES.open_row("orders", order, COLUMNS)
