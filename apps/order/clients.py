"""The order service's calls to the customer and catalog services: apps.common.dependencies' shared
calls (today's prices, whether a customer exists), with short timeouts and a 503 naming a dependency
that does not answer in time, refuses the connection, fails with a 5xx or answers what we cannot read.
"""

from __future__ import annotations

from apps.common.dependencies import CatalogAndCustomers, catalog_and_customers_lifespan
from apps.order.settings import settings

Dependencies = CatalogAndCustomers
dependencies_lifespan = catalog_and_customers_lifespan(Dependencies, lambda: settings().dependency_timeout_s)
