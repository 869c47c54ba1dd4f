"""Alembic environment for the checkout service; the body is shared in apps.common."""

from apps.checkout import models  # noqa: F401  (registers the tables on the checkout metadata)
from apps.common.migrations_env import run

run()
