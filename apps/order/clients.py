"""The order service's calls to the customer and catalog services: apps.common.dependencies' shared
calls (today's prices, whether a customer exists), with short timeouts and a 503 naming a dependency
that does not answer in time, refuses the connection, fails with a 5xx or answers what we cannot read.
"""

from __future__ import annotations

import os

from apps.common.dependencies import CatalogAndCustomers, catalog_and_customers_lifespan

TIMEOUT_S = float(os.environ.get("ORDER_DEPENDENCY_TIMEOUT_S", "2.0"))

Dependencies = CatalogAndCustomers
dependencies_lifespan = catalog_and_customers_lifespan(Dependencies, TIMEOUT_S)
