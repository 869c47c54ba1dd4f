"""The database a service's consumer groups keep their inbox and projections in: the service's own."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from apps.common.topology import BY_NAME, database_url

__all__ = ["consumer_database_url"]


def consumer_database_url(service: str) -> Callable[[], str]:
    """What a ``consumers.py`` names as ``database_url`` (outbox.runner and outbox.replay call it): the
    service's database URL, read from the environment when called, not at import."""
    return partial(database_url, BY_NAME[service])
