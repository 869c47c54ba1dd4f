"""Bring every service database to its latest Alembic revision (advanced-alchemy's commands).

    just migrate                    every service database, in the topology's order
    just migrate order customer     only these services' databases

Each run takes the database's migration lock first and waits for a run in progress (docs/operations.md,
"Migrations without downtime"); a migration that cannot get a table's lock within MIGRATION_LOCK_TIMEOUT
fails rather than queueing requests behind it: run it again.
"""

from __future__ import annotations

import argparse
import sys

from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.topology import BY_NAME, SERVICES, ServiceSpec


def upgrade(spec: ServiceSpec, revision: str = "head") -> None:
    AlembicCommands(sqlalchemy_config=alchemy_config(spec)).upgrade(revision)


def upgrade_all() -> None:
    for spec in SERVICES:
        upgrade(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="just migrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "services", nargs="*", metavar="SERVICE", help=f"default: all ({', '.join(s.name for s in SERVICES)})"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.services if name not in BY_NAME]
    if unknown:  # before migrating any: a typo must not leave half of a list migrated
        parser.error(f"no service {', '.join(unknown)}; services: {', '.join(s.name for s in SERVICES)}")
    for name in args.services or [spec.name for spec in SERVICES]:
        upgrade(BY_NAME[name])
        print(f"{name}: migrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
