"""Bring every service database to its latest Alembic revision (advanced-alchemy's commands)."""

from __future__ import annotations

import sys

from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.topology import BY_NAME, SERVICES, ServiceSpec


def upgrade(spec: ServiceSpec, revision: str = "head") -> None:
    AlembicCommands(sqlalchemy_config=alchemy_config(spec)).upgrade(revision)


def upgrade_all() -> None:
    for spec in SERVICES:
        upgrade(spec)


if __name__ == "__main__":
    names = sys.argv[1:] or [spec.name for spec in SERVICES]
    for name in names:
        upgrade(BY_NAME[name])
        print(f"{name}: migrated")
