"""The customer service's Litestar app: wiring only (run: uvicorn apps.customer.app:create_app --factory)."""

from __future__ import annotations

from litestar import Litestar

from apps.common.access_log_api import CustomerAccessLogController
from apps.common.http import create_service_app
from apps.common.topology import BY_NAME
from apps.customer.controllers import CustomerController
from apps.customer.data_keys import DataKeyController

# The API's version in its OpenAPI document: 0.2.0 moved the stats' money into by_currency (docs/decisions.md,
# "Customer stats per currency").
API_VERSION = "0.2.0"


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["customer"],
        controllers=[CustomerAccessLogController, CustomerController, DataKeyController],
        version=API_VERSION,
    )
