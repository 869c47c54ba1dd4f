"""The checkout service's calls to the catalog (prices) and the customer service (customers, saved
addresses): apps.common.dependencies' shared calls, plus the saved addresses only checkout reads."""

from __future__ import annotations

import functools

from apps.checkout.settings import settings
from apps.common.addresses import AddressFields
from apps.common.data_keys import DataKeys
from apps.common.dependencies import CatalogAndCustomers, catalog_and_customers_lifespan


class SavedAddress(AddressFields, frozen=True, kw_only=True):
    """One of a customer's addresses, as the customer API returns it (its other fields are ignored)."""

    id: int
    type: str


class Dependencies(CatalogAndCustomers):
    @functools.cached_property
    def data_keys(self) -> DataKeys:
        """Buyers' data keys for checkout.completed (apps/common/data_keys.py), a live one asked for at each
        completion: from a cache, a key destroyed a moment ago sealed a completion made after the erasure."""
        return DataKeys(self.customers, ttl_s=0)

    async def addresses(self, customer_id: str) -> list[SavedAddress] | None:
        """The customer's saved addresses (the seed's GetCustomerAddresses); None for an unknown customer."""
        status, content = await self.customers.get(f"/api/customers/{customer_id}/addresses")
        if status == 404:
            return None
        return self.customers.decode(status, content, list[SavedAddress])


dependencies_lifespan = catalog_and_customers_lifespan(Dependencies, lambda: settings().dependency_timeout_s)
