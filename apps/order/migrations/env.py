"""Alembic environment for the order service; the body is shared in apps.common."""

from apps.common.migrations_env import run
from apps.order import models  # noqa: F401  (registers the tables on the order metadata)

run()
