"""HTTP routes of the catalog: decode, call one ProductService method, return a schema."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from apps.catalog.schemas import (
    ProductCreate,
    ProductOut,
    ProductPage,
    ProductUpdate,
    ValidatedProducts,
    ValidateProducts,
    to_product_out,
    to_valid_product,
)
from apps.catalog.services import ProductService
from apps.common.auth import allow, public
from apps.common.pagination import Cursor
from apps.common.providers import create_service_provider
from apps.common.read_routing import replica_reads

__all__ = ["ProductController"]

# The request's ProductService, injected by parameter name.
Products: TypeAlias = NamedDependency[ProductService]

DEFAULT_PAGE_SIZE = 20
BROWSING = public("catalog browsing")
MAX_PAGE_SIZE = 100


class ProductController(Controller):
    """Products: create, read, change, withdraw, list, and validate for pricing."""

    path = "/api/products"
    tags = ["products"]
    dependencies = {"products": create_service_provider(ProductService)}

    @post(status_code=HTTP_201_CREATED, guards=[allow("admin")])
    async def create_product(self, data: JSONBody[ProductCreate], products: Products) -> ProductOut:
        """Create a product; 409 if its sku is taken (also by a deleted product)."""
        return to_product_out(await products.create(data))

    @get("/{product_id:uuid}", guards=[BROWSING])
    async def get_product(self, product_id: FromPath[uuid.UUID], products: Products) -> ProductOut:
        """One product; 404 if unknown or deleted."""
        return to_product_out(await products.get(product_id))

    @patch("/{product_id:uuid}", guards=[allow("admin")])
    async def update_product(
        self, product_id: FromPath[uuid.UUID], data: JSONBody[ProductUpdate], products: Products
    ) -> ProductOut:
        """Change some fields of a product."""
        return to_product_out(await products.update(product_id, data))

    @delete("/{product_id:uuid}", status_code=HTTP_204_NO_CONTENT, guards=[allow("admin")])
    async def delete_product(self, product_id: FromPath[uuid.UUID], products: Products) -> None:
        """Withdraw a product (soft delete)."""
        await products.delete(product_id)

    # A listing: the replica may serve it.
    @get(dependencies={"products": replica_reads(ProductService)}, guards=[BROWSING])
    async def list_products(
        self,
        products: Products,
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        category_id: FromQuery[uuid.UUID | None] = None,
    ) -> ProductPage:
        """Live products, newest first, one page at a time."""
        page = await products.list_page(limit=limit, cursor=cursor, category_id=category_id)
        return ProductPage(items=[to_product_out(p) for p in page.items], next_cursor=page.next_cursor)

    @post("/validate", status_code=HTTP_200_OK, guards=[public("catalog prices, as browsing shows them")])
    async def validate_products(self, data: JSONBody[ValidateProducts], products: Products) -> ValidatedProducts:
        """Which of these products can be sold, and at what price (used to price orders)."""
        valid, invalid = await products.validate(data.product_ids)
        return ValidatedProducts(valid=[to_valid_product(p) for p in valid], invalid=invalid)
