"""The returns service's tables."""

from __future__ import annotations

from apps.common.models import ServiceBase


class Base(ServiceBase, bind_key="returns"):
    """Every returns table lives on this service's own metadata, next to its outbox tables."""
