"""HTTP routes of the customer service: decode, call one CustomerService method, return its schema."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from apps.common.auth import allow, public
from apps.common.fields import MAX_INT_ID
from apps.common.providers import create_service_provider
from apps.customer.erasure import CustomerErasure, ErasureOut
from apps.customer.schemas import (
    AddressCreate,
    AddressOut,
    AddressUpdate,
    CustomerCreate,
    CustomerOut,
    CustomerStatsOut,
    CustomerUpdate,
    to_stats_out,
)
from apps.customer.services import CustomerService

__all__ = ["CustomerController"]

# Policies: a customer reaches only their own id (another's is a 404); support reads; the order and
# checkout services read a customer and their addresses with a service token.
OWN = allow("customer", own="customer_id")
OWN_OR_STAFF = allow("customer", "staff", own="customer_id")
READ = allow("customer", "staff", service="customer:read", own="customer_id")

# An address's id (customer_addresses.id, a BIGINT): past MAX_INT_ID a 400 naming it, not the database's refusal.
AddressId = Annotated[int, PathParameter(le=MAX_INT_ID, description="the address's id (its `id` in the listing)")]

# The request's CustomerService, injected by parameter name.
Customers: TypeAlias = NamedDependency[CustomerService]
Erasures: TypeAlias = NamedDependency[CustomerErasure]


class CustomerController(Controller):
    """Customers: register, read, change; their addresses and their order stats."""

    path = "/api/customers"
    tags = ["customers"]
    dependencies = {
        "customers": create_service_provider(CustomerService),
        "erasures": create_service_provider(CustomerErasure),
    }

    @post(status_code=HTTP_201_CREATED, guards=[public("registration")])
    async def register_customer(self, data: JSONBody[CustomerCreate], customers: Customers) -> CustomerOut:
        """Register a customer; 409 if the email is taken (compared case-insensitively)."""
        return await customers.register(data)

    @get("/{customer_id:uuid}", guards=[READ])
    async def get_customer(self, customer_id: FromPath[uuid.UUID], customers: Customers) -> CustomerOut:
        """One customer; 404 if unknown. Other services call this to check that a customer exists."""
        return await customers.get(customer_id)

    @patch("/{customer_id:uuid}", guards=[OWN])
    async def update_customer(
        self, customer_id: FromPath[uuid.UUID], data: JSONBody[CustomerUpdate], customers: Customers
    ) -> CustomerOut:
        """Change some fields of a customer; 409 if a new email is taken."""
        return await customers.update(customer_id, data)

    @get("/{customer_id:uuid}/addresses", guards=[READ])
    async def list_addresses(self, customer_id: FromPath[uuid.UUID], customers: Customers) -> list[AddressOut]:
        """The customer's addresses, oldest first; 404 if the customer is unknown."""
        return await customers.list_addresses(customer_id)

    @post("/{customer_id:uuid}/addresses", status_code=HTTP_201_CREATED, guards=[OWN])
    async def add_address(
        self, customer_id: FromPath[uuid.UUID], data: JSONBody[AddressCreate], customers: Customers
    ) -> AddressOut:
        """Add a shipping or billing address; ``is_default`` replaces the default of that type; 409 naming
        ``customer_id`` past the 100 addresses a customer keeps (``services.MAX_ADDRESSES``)."""
        return await customers.add_address(customer_id, data)

    @patch("/{customer_id:uuid}/addresses/{address_id:int}", guards=[OWN])
    async def update_address(
        self,
        customer_id: FromPath[uuid.UUID],
        address_id: AddressId,
        data: JSONBody[AddressUpdate],
        customers: Customers,
    ) -> AddressOut:
        """Change some fields of an address (the rules of a new one; ``is_default`` replaces the default of its
        type); 404 for an unknown one or another customer's. A checkout started with it keeps its copy."""
        return await customers.update_address(customer_id, address_id, data)

    @delete("/{customer_id:uuid}/addresses/{address_id:int}", guards=[OWN_OR_STAFF])
    async def delete_address(
        self, customer_id: FromPath[uuid.UUID], address_id: AddressId, customers: Customers
    ) -> None:
        """Remove an address for good (204); 404 for an unknown one or another customer's. Support may remove
        one too, as it may erase the whole customer. A checkout started with it keeps its own copy."""
        await customers.delete_address(customer_id, address_id)

    @get("/{customer_id:uuid}/stats", guards=[OWN_OR_STAFF])
    async def get_stats(self, customer_id: FromPath[uuid.UUID], customers: Customers) -> CustomerStatsOut:
        """Orders, cancellations and returns, and spend and refunds per currency (from order and return events,
        so eventually consistent); zeros and no currency before the first order; 404 if the customer is
        unknown."""
        return to_stats_out(await customers.get_stats(customer_id))

    @post("/{customer_id:uuid}/erase", status_code=HTTP_202_ACCEPTED, guards=[OWN_OR_STAFF])
    async def erase_customer(self, customer_id: FromPath[uuid.UUID], erasures: Erasures) -> ErasureOut:
        """GDPR erasure: anonymised here at once, in every other service once it applied customer.erased
        (202); a repeat answers the same and sends nothing. 404 if the id was never a customer."""
        return await erasures.erase(customer_id)
