"""The checkout service's sealed columns: the addresses on checkout sessions (carts hold no personal
data: a customer id or a hashed guest token, and product lines).

Sealed with the checkout service's keyring (``.stack/keys/checkout.json`` or CHECKOUT_KEYRING_FILE)
through apps/common/sealed_addresses.py; rotation: ``just keys checkout rotate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from apps.common.sealed_addresses import SealedAddresses

if TYPE_CHECKING:
    from apps.checkout.models import CheckoutSession

__all__ = ["ADDRESSES", "SEALED_TABLES", "SERVICE", "keyring", "opened_addresses", "seal_addresses"]

SERVICE: Final = "checkout"
ADDRESSES: Final = SealedAddresses(SERVICE)
COLUMNS: Final = ("shipping_address", "billing_address")
SEALED_TABLES: Final = (ADDRESSES.table("checkout_sessions", COLUMNS),)
keyring = ADDRESSES.keyring


def seal_addresses(session: CheckoutSession) -> None:
    ADDRESSES.seal_row("checkout_sessions", session, COLUMNS)


def opened_addresses(session: CheckoutSession) -> dict[str, Any]:
    return ADDRESSES.open_row("checkout_sessions", session, COLUMNS)
