"""Alembic environment for the analytics service; the body is shared in apps.common."""

from apps.analytics import models  # noqa: F401  (registers the tables on the analytics metadata)
from apps.common.migrations_env import run

run()
