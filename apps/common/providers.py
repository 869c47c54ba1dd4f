"""Per-request services for controllers, in the spirit of litestar-fullstack's ``create_service_provider``.

A controller names the service it wants under the parameter name its handlers use::

    dependencies = {"products": create_service_provider(ProductService)}

and each request gets ``ProductService(db_session)`` on the request's own session (which the service
commits, or which is rolled back when the response is sent). A handler that usually sends nothing through
it builds its service on ``apps/common/db.py``'s ``lazy_session`` itself (POST /api/orders).
"""

from __future__ import annotations

# Litestar resolves the provider's annotations at runtime: they stay real imports.
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["create_service_provider"]

ServiceT = TypeVar("ServiceT")


def create_service_provider(service: Callable[..., ServiceT], *, from_state: Sequence[str] = ()) -> Provide:
    """A provider of ``service(db_session, *values)``, the values read from the app's state by name.

    ``from_state`` suits clients opened once in the app's lifespan (the order service's HTTP sessions to
    its dependencies): ``create_service_provider(OrderService, from_state=["dependencies"])``.
    """
    keys = tuple(from_state)

    def provide(db_session: NamedDependency[AsyncSession], state: State) -> Any:
        return service(db_session, *(state[key] for key in keys))

    return Provide(provide, sync_to_thread=False)
