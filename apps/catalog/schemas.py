"""Request and response bodies of the catalog API, and the opaque list cursor.

Money travels as a decimal string ("19.90"). Shape constraints (lengths, patterns) sit on the fields so
that Litestar names the field when they fail and OpenAPI shows them; the domain rules themselves live in
rules.py and are applied by the service, for every caller.
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema
from msgspec import UNSET, Meta, UnsetType

from apps.catalog.rules import (
    CURRENCY_PATTERN,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_SKU_LENGTH,
    PRICE_PATTERN,
    SKU_PATTERN,
)
from apps.common.fields import FREE_TEXT_PATTERN, LINE_PATTERN

if TYPE_CHECKING:
    from apps.catalog.models import Product

__all__ = [
    "MAX_VALIDATE_IDS",
    "ProductCreate",
    "ProductOut",
    "ProductPage",
    "ProductUpdate",
    "ValidProduct",
    "ValidateProducts",
    "ValidatedProducts",
    "to_product_out",
    "to_valid_product",
]

MAX_DESCRIPTION_LENGTH = 10_000
MAX_VALIDATE_IDS = 500  # an order has far fewer lines; the cap keeps one request's IN list bounded

Sku = Annotated[str, Meta(min_length=1, max_length=MAX_SKU_LENGTH, pattern=SKU_PATTERN, examples=["TSHIRT-RED-M"])]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=LINE_PATTERN, examples=["Red shirt"])]
Currency = Annotated[str, Meta(pattern=CURRENCY_PATTERN, description="ISO 4217 code", examples=["USD"])]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION_LENGTH, pattern=FREE_TEXT_PATTERN)]
Money = Annotated[Decimal, Meta(description="decimal string, at most 2 decimal places", examples=["19.90"])]
# A price in a request: a decimal string, or a JSON number, each with at most 2 decimals and no more than its
# currency has (none for JPY: a 422 naming the field). check_price and the service's check_places enforce
# both arms; Litestar drops constraints inside a union, so the document gets them here.
PriceIn = Annotated[
    str | float,
    Meta(
        description=f"0 to {MAX_PRICE}: a decimal string or a number, at most 2 decimal places and no more than "
        "the currency has (none for JPY, KRW, ...: 422 otherwise)",
        extra_json_schema={
            "extra": {
                "one_of": [
                    Schema(type=OpenAPIType.STRING, pattern=PRICE_PATTERN, examples=["19.90"]),
                    Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=float(MAX_PRICE)),
                ]
            }
        },
    ),
]


class ProductCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/products. Unknown fields are refused, so a misspelt field is a 400, not silently lost."""

    sku: Sku
    name: Name
    price: PriceIn
    currency: Currency = "USD"
    description: Description | None = None
    category_id: uuid.UUID | None = None


class ProductUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PATCH /api/products/{id}: only the fields present change; ``null`` clears an optional field.

    The sku is not updatable: orders, carts and stock rows copy it as the product's business key.
    """

    name: Name | UnsetType = UNSET
    price: PriceIn | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    category_id: uuid.UUID | UnsetType | None = UNSET
    status: Literal["active", "inactive"] | UnsetType = UNSET


class ProductOut(msgspec.Struct, kw_only=True):
    """A product as the API shows it."""

    id: uuid.UUID
    sku: str
    name: str
    price: Money
    currency: str
    status: str
    description: str | None
    category_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ProductPage(msgspec.Struct, kw_only=True):
    """One page of products, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[ProductOut]
    next_cursor: str | None


class ValidateProducts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/products/validate: the products an order or a cart wants to sell."""

    product_ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=MAX_VALIDATE_IDS)]


class ValidProduct(msgspec.Struct, kw_only=True):
    """A sellable product with the price to charge."""

    id: uuid.UUID
    sku: str
    name: str
    price: Money
    currency: str


class ValidatedProducts(msgspec.Struct, kw_only=True):
    """Sellable products (active, not deleted) and the ids that are not, each in request order."""

    valid: list[ValidProduct]
    invalid: list[uuid.UUID]


# The response structs name a subset of the row's columns: each mapper reads those attributes.
def to_product_out(product: Product) -> ProductOut:
    return msgspec.convert(product, ProductOut, from_attributes=True)


def to_valid_product(product: Product) -> ValidProduct:
    return msgspec.convert(product, ValidProduct, from_attributes=True)
