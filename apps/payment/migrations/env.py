"""Alembic environment for the payment service; the body is shared in apps.common."""

from apps.common.migrations_env import run
from apps.payment import models  # noqa: F401  (registers the tables on the payment metadata)

run()
