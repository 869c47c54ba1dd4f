"""Alembic environment for the warehouse service; the body is shared in apps.common."""

from apps.common.migrations_env import run
from apps.warehouse import models  # noqa: F401  (registers the tables on the warehouse metadata)

run()
