"""Per-request services for controllers, in the spirit of litestar-fullstack's ``create_service_provider``.

A controller names the service it wants under the parameter name its handlers use::

    dependencies = {"products": create_service_provider(ProductService)}

and each request gets ``ProductService(db_session)`` on the request's own session (which the service
commits, or which is rolled back when the response is sent). With ``lazy_session=True`` that session is made
only when the service first uses it (``apps/common/db.py`` ``LazySession``), for a handler that usually
sends nothing through it.
"""

from __future__ import annotations

# Litestar resolves the provider's annotations at runtime: they stay real imports.
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.db import lazy_session as make_lazy_session

__all__ = ["create_service_provider"]

ServiceT = TypeVar("ServiceT")


def create_service_provider(
    service: Callable[..., ServiceT], *, from_state: Sequence[str] = (), lazy_session: bool = False
) -> Provide:
    """A provider of ``service(db_session, *values)``, the values read from the app's state by name.

    ``from_state`` suits clients opened once in the app's lifespan (the order service's HTTP sessions to
    its dependencies): ``create_service_provider(OrderService, from_state=["dependencies"])``.
    ``lazy_session``: the session is made on its first use (see the module docstring).
    """
    keys = tuple(from_state)
    if lazy_session:

        def provide_lazily(state: State, scope: Scope) -> Any:
            return service(make_lazy_session(state, scope), *(state[key] for key in keys))

        return Provide(provide_lazily, sync_to_thread=False)

    def provide(db_session: NamedDependency[AsyncSession], state: State) -> Any:
        return service(db_session, *(state[key] for key in keys))

    return Provide(provide, sync_to_thread=False)
