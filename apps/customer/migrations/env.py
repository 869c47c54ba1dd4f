"""Alembic environment for the customer service; the body is shared in apps.common."""

from apps.common.migrations_env import run
from apps.customer import models  # noqa: F401  (registers the tables on the customer metadata)

run()
