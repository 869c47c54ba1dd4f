"""Alembic environment for the catalog service; the body is shared in apps.common."""

from apps.catalog import models  # noqa: F401  (registers the tables on the catalog metadata)
from apps.common.migrations_env import run

run()
