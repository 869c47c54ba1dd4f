"""The analytics service's Litestar app: wiring only (run: uvicorn apps.analytics.app:create_app --factory)."""

from __future__ import annotations

from litestar import Litestar

from apps.analytics.controllers import SalesController
from apps.common.http import create_service_app
from apps.common.topology import BY_NAME


def create_app() -> Litestar:
    return create_service_app(BY_NAME["analytics"], controllers=[SalesController])
