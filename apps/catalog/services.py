"""ProductService: every write changes the products row and adds its event in one transaction, then commits.

The service owns the commit. A commit that fails (the outbox insert refused, the connection lost) raises
to the caller, so the client gets an error and never a "created" for something that was rolled back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from msgspec import UNSET
from sqlalchemy import literal, select, tuple_
from uuid_utils.compat import uuid7

from apps.catalog.events import ProductCreated, ProductDeleted, ProductUpdated
from apps.catalog.models import Product
from apps.catalog.rules import (
    ACTIVE,
    DELETED,
    check_currency,
    check_name,
    check_price,
    check_sku,
    check_status_change,
)
from apps.common.models import utc_now
from apps.common.pagination import decode_cursor, encode_cursor
from apps.common.pricing import check_places
from apps.common.repository import error_messages, get_live, unique
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.catalog.schemas import ProductCreate, ProductUpdate

__all__ = ["ProductPageResult", "ProductRepository", "ProductService"]

_ERROR_MESSAGES: Final = error_messages("product", "catalog", duplicate="a product with this sku already exists")

# Fields a PATCH may change, with the rule each new value must pass (None: the schema's type suffices).
_UPDATABLE: Final[dict[str, Callable[[Any], Any] | None]] = {
    "name": check_name,
    "price": check_price,
    "currency": check_currency,
    "description": None,
    "category_id": None,
}


class ProductRepository(SQLAlchemyAsyncRepository[Product]):
    """advanced-alchemy repository over the products table."""

    model_type = Product


@dataclass(frozen=True, slots=True)
class ProductPageResult:
    """A page of products and the cursor after its last row (None on the last page)."""

    items: Sequence[Product]
    next_cursor: str | None


def _live(statement: Select[tuple[Product]]) -> Select[tuple[Product]]:
    return statement.where(Product.deleted_at.is_(None))


class ProductService:
    """Products: create, read, change, delete, list and validate for pricing."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # auto_refresh off: every column is set in Python (models.py), so a re-read after flush is waste.
        self.repository = ProductRepository(session=session, auto_refresh=False, error_messages=_ERROR_MESSAGES)

    async def create(self, data: ProductCreate) -> Product:
        sku = check_sku(data.sku)
        now = utc_now()
        currency = check_currency(data.currency)
        product = Product(
            id=uuid7(),  # time-ordered: new rows land at the end of the primary-key index
            sku=sku,
            name=check_name(data.name),
            price=check_places("price", check_price(data.price), currency),
            currency=currency,
            description=data.description,
            category_id=data.category_id,
            status=ACTIVE,
            created_at=now,
            updated_at=now,
        )
        with unique("sku", f"sku {sku!r} is already taken", _ERROR_MESSAGES):
            await self.repository.add(product)  # the flush runs the INSERT
        await add_event(self.session, product.id, _created(product))
        await self.session.commit()
        return product

    async def get(self, product_id: uuid.UUID) -> Product:
        return await get_live(self.repository, product_id, noun="product")

    async def update(self, product_id: uuid.UUID, changes: ProductUpdate) -> Product:
        product = await self._get_for_write(product_id)
        changed = _apply(product, changes)
        if not changed:
            return product  # nothing to say: no event, and the session closes without a write
        product.updated_at = utc_now()
        await self.session.flush()
        await add_event(self.session, product.id, _updated(product, changed))
        await self.session.commit()
        return product

    async def delete(self, product_id: uuid.UUID) -> None:
        """Soft delete: the row stays (orders refer to it, its sku stays taken) but is gone from the API."""
        product = await self._get_for_write(product_id)
        now = utc_now()
        product.status = DELETED
        product.deleted_at = now
        product.updated_at = now
        await self.session.flush()
        await add_event(self.session, product.id, ProductDeleted(id=product.id, sku=product.sku, deleted_at=now))
        await self.session.commit()

    async def list_page(
        self, *, limit: int, cursor: str | None = None, category_id: uuid.UUID | None = None
    ) -> ProductPageResult:
        """Newest first, by keyset on (created_at, id): stable under inserts, no OFFSET scans."""
        statement = _live(select(Product))
        if category_id is not None:
            statement = statement.where(Product.category_id == category_id)
        if cursor:
            created_at, last_id = decode_cursor(cursor)
            statement = statement.where(
                tuple_(Product.created_at, Product.id) < tuple_(literal(created_at), literal(last_id))
            )
        # One row more than asked tells whether another page exists without a COUNT.
        statement = statement.order_by(Product.created_at.desc(), Product.id.desc()).limit(limit + 1)
        rows = list(await self.repository.get_many(statement=statement))
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return ProductPageResult(page, next_cursor)

    async def validate(self, product_ids: Sequence[uuid.UUID]) -> tuple[list[Product], list[uuid.UUID]]:
        """Split ids into sellable products (active, not deleted) and the rest, both in request order."""
        wanted = list(dict.fromkeys(product_ids))  # de-duplicated, first occurrence wins
        statement = _live(select(Product).where(Product.id.in_(wanted), Product.status == ACTIVE))
        found = {product.id: product for product in await self.repository.get_many(statement=statement)}
        return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]

    async def _get_for_write(self, product_id: uuid.UUID) -> Product:
        return await get_live(self.repository, product_id, noun="product", for_update=True)


def _apply(product: Product, changes: ProductUpdate) -> list[str]:
    """Set the fields that the PATCH carries and that really differ; return their names."""
    changed: list[str] = []
    for field, rule in _UPDATABLE.items():
        value = getattr(changes, field)
        if value is UNSET:
            continue
        if rule is not None:
            value = rule(value)
        if getattr(product, field) != value:
            setattr(product, field, value)
            changed.append(field)
    if "price" in changed or "currency" in changed:
        # The price and currency the row would have: a currency change alone may contradict the stored price
        # (19.90 USD made JPY), and is named as the field at fault then.
        check_places("price" if changes.price is not UNSET else "currency", product.price, product.currency)
    if changes.status is not UNSET:
        status = check_status_change(product.status, changes.status)
        if status != product.status:
            product.status = status
            changed.append("status")
    return changed


def _created(product: Product) -> ProductCreated:
    # The event is the product's full current state: its fields are the row's attributes of that name.
    return msgspec.convert(product, ProductCreated, from_attributes=True)


def _updated(product: Product, changed: Sequence[str]) -> ProductUpdated:
    snapshot = msgspec.convert(product, ProductUpdated, from_attributes=True)
    return msgspec.structs.replace(snapshot, changed=tuple(changed))
