"""Alembic environment for the returns service; the body is shared in apps.common."""

from apps.common.migrations_env import run
from apps.returns import models  # noqa: F401  (registers the tables on the returns metadata)

run()
