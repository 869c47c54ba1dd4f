"""Every variable the warehouse service reads (docs/operations.md, Settings), read once at start."""

from __future__ import annotations

from dataclasses import dataclass

from apps.common.settings import DAY_S, Settings, env, once

__all__ = ["WarehouseSettings", "settings"]


@dataclass(frozen=True, slots=True)
class WarehouseSettings(Settings):
    # The call to the catalog (does a product exist before it is stocked): past this, a 503 naming it.
    dependency_timeout_s: float = env("WAREHOUSE_DEPENDENCY_TIMEOUT_S", 2.0, above=0, maximum=DAY_S)


settings = once(WarehouseSettings)
