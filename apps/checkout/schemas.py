"""Request and response bodies of the carts and checkout API. Money is a decimal string ("19.90")."""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema
from msgspec import Meta

from apps.checkout.rules import MAX_QUANTITY
from apps.checkout.sealed import opened_addresses
from apps.common.addresses import Address
from apps.common.fields import worded
from apps.common.pricing import PricedLine
from apps.common.responses import from_row

if TYPE_CHECKING:
    from apps.checkout.models import CartItem, CartSession, CheckoutSession

Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="units, 1..1000")]
Short = Annotated[str, Meta(min_length=1, max_length=255)]
SavedAddressId = Annotated[int, Meta(ge=1, description="id of one of the customer's saved addresses")]
PaymentType = Literal["card", "paypal", "bank_transfer", "wallet"]


class CartCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/carts: a customer's cart, or without customer_id a guest's."""

    customer_id: uuid.UUID | None = None


class ItemAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Quantity


class ItemUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity


class CartItemOut(PricedLine, frozen=True, kw_only=True):
    """A cart's line at the price it was added at; ``id`` names it in the item routes."""

    id: int


class CartOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A cart. ``guest_token`` is in the creation response of a guest cart only: keep it."""

    id: uuid.UUID
    session_id: str
    customer_id: str | None
    status: str
    items: list[CartItemOut]
    subtotal: Decimal
    currency: str | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    guest_token: str | None = None


class PaymentMethod(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The payment provider's reference to a payment method; never a card number."""

    type: PaymentType
    token: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=255,
            pattern=worded(r"^[\x21-\x7e ]+$", "must be printable ASCII (the provider's token)"),
            description=(
                "the provider's token for the buyer's card or account; the local sandbox's: `tok_visa` approves, "
                "`tok_chargeDeclined` declines (the others: README, Payment)"
            ),
            examples=["tok_visa"],
        ),
    ]


class CheckoutCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/checkout: each address inline or as one of the customer's saved addresses; without a
    billing address the order is billed to the shipping address."""

    cart_id: uuid.UUID
    shipping_method_id: Annotated[
        Short,
        Meta(
            description="a row of `shipping_methods` for the cart's currency: `standard` or `express` as seeded",
            examples=["standard"],
        ),
    ]
    payment_method: PaymentMethod
    shipping_address: Address | None = None
    customer_shipping_address_id: SavedAddressId | None = None
    billing_address: Address | None = None
    customer_billing_address_id: SavedAddressId | None = None


class CheckoutLineOut(PricedLine, frozen=True, kw_only=True):
    """A line as the checkout session priced it."""


class CheckoutOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    session_token: str
    cart_id: uuid.UUID | None
    customer_id: str
    status: str
    items: list[CheckoutLineOut]
    shipping_address: Address | None
    billing_address: Address | None
    shipping_method_id: str | None
    shipping_method_name: str | None
    payment_method_type: str | None
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    total_amount: Decimal
    currency: str
    expires_at: dt.datetime
    created_at: dt.datetime
    completed_at: dt.datetime | None
    order_id: uuid.UUID | None


class CompleteOut(msgspec.Struct, kw_only=True):
    """The answer to complete: the order is created asynchronously from checkout.completed."""

    checkout_id: uuid.UUID
    status: str
    order_id: uuid.UUID | None


def to_cart_out(cart: CartSession, items: list[CartItem]) -> CartOut:
    lines = [
        CartItemOut(
            id=i.id,
            product_id=i.product_id,
            sku=i.product_sku,
            name=i.product_name,
            quantity=i.quantity,
            unit_price=i.unit_price or Decimal("0.00"),
            total_price=i.total_price or Decimal("0.00"),
        )
        for i in sorted(items, key=lambda item: item.id)
    ]
    return CartOut(
        id=cart.id,
        session_id=cart.session_id,
        customer_id=cart.customer_id,
        status=cart.status,
        items=lines,
        subtotal=sum((line.total_price for line in lines), Decimal("0.00")),
        currency=cart.currency,
        expires_at=cart.expires_at,
        created_at=cart.created_at,
        updated_at=cart.updated_at,
    )


def lines_to_json(lines: tuple[PricedLine, ...]) -> list[dict[str, str | int]]:
    """The priced lines as stored in the session's metadata (money as strings, exact)."""
    return msgspec.to_builtins(lines)  # type: ignore[no-any-return]


def to_checkout_out(session: CheckoutSession, status: str) -> CheckoutOut:
    """The session's columns, its priced lines from its metadata, and ``status`` as of now (an expired
    session still says initialized in its row)."""
    lines = msgspec.convert(session.metadata_.get("lines", []), list[CheckoutLineOut], strict=False)
    return from_row(CheckoutOut, session, status=status, items=lines, **opened_addresses(session))


def _present(field: str, json_type: OpenAPIType) -> Schema:
    return Schema(required=[field], properties={field: Schema(type=json_type)})


# What the handler checks beyond the fields' own types, said in the document too: exactly one shipping
# address (inline or saved), at most one billing address (none: billed to the shipping address).
CHECKOUT_CREATE_RULES: dict[str, Any] = {
    "oneOf": [
        _present("shipping_address", OpenAPIType.OBJECT),
        _present("customer_shipping_address_id", OpenAPIType.INTEGER),
    ],
    "not": Schema(
        all_of=[
            _present("billing_address", OpenAPIType.OBJECT),
            _present("customer_billing_address_id", OpenAPIType.INTEGER),
        ]
    ),
}
