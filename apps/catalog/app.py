"""The catalog service's Litestar app: wiring only (run: uvicorn apps.catalog.app:create_app --factory)."""

from __future__ import annotations

from litestar import Litestar

from apps.catalog.controllers import ProductController
from apps.common.http import create_service_app
from apps.common.topology import BY_NAME


def create_app() -> Litestar:
    return create_service_app(BY_NAME["catalog"], controllers=[ProductController])
