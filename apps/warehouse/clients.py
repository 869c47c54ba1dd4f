"""The warehouse's call to the catalog: whether a product exists, before its stock is set.

Setting stock is a rare staff operation, so the catalog API is asked each time (as the order service asks
it on a miss) rather than the warehouse keeping a read model of product.* events: the answer is the
catalog's own, at once (a product created a moment ago can be stocked right away), and nothing more to run.
A catalog that is down is a 503 naming it (apps.common.service_client), and nothing is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from apps.common.dependencies import service_clients_lifespan
from apps.common.errors import UnknownReference
from apps.common.service_client import ServiceClient
from apps.warehouse.settings import settings

__all__ = ["Dependencies", "dependencies_lifespan"]


@dataclass
class Dependencies:
    catalog: ServiceClient

    async def require_product(self, product_id: uuid.UUID) -> None:
        """UnknownReference (422) on the path's product_id unless the catalog has the product; a deleted
        (withdrawn) product is unknown to it too (its GET answers 404), so it cannot be stocked again."""
        if not await self.catalog.exists(f"/api/products/{product_id}"):
            raise UnknownReference("product_id", f"the catalog has no product {product_id}", source="path")


dependencies_lifespan = service_clients_lifespan(Dependencies, ("catalog",), lambda: settings().dependency_timeout_s)
