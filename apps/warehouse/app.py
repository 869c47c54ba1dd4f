"""The warehouse service's Litestar app: wiring only (run: uvicorn apps.warehouse.app:create_app --factory)."""

from __future__ import annotations

from litestar import Litestar

from apps.common.http import create_service_app
from apps.common.topology import BY_NAME
from apps.warehouse.clients import dependencies_lifespan
from apps.warehouse.controllers import InventoryController, ReservationController
from apps.warehouse.settings import settings


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["warehouse"],
        controllers=[InventoryController, ReservationController],
        settings=settings,
        lifespan=[dependencies_lifespan],  # the catalog client: a product must exist to be stocked
    )
