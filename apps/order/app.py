"""The order service's Litestar app: wiring only (run: uvicorn apps.order.app:create_app --factory)."""

from __future__ import annotations

from litestar import Litestar

from apps.common.access_log_api import internal_access_log_controller
from apps.common.http import create_service_app
from apps.common.topology import BY_NAME
from apps.order.clients import dependencies_lifespan
from apps.order.controllers import OrderController
from apps.order.settings import settings


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["order"],
        controllers=[OrderController, internal_access_log_controller("order")],
        settings=settings,
        lifespan=[dependencies_lifespan],
    )
