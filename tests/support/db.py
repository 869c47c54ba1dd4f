"""Direct asyncpg connections to a service database as its own role."""

from __future__ import annotations

import asyncpg

from apps.common.topology import BY_NAME, database_url


async def connect(service: str) -> asyncpg.Connection:
    url = database_url(BY_NAME[service], driver="postgresql")
    return await asyncpg.connect(url)
