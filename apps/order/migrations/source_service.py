"""The expand/contract of orders.created_by_service -> orders.source_service (migrations 0005-0007).

Shared by the three migrations: the trigger that keeps both columns equal while both exist, and the
batched backfill (each batch its own transaction, rows a request holds skipped and retried).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import context, op

BATCH = 1000
TRIGGER = "orders_source_service_sync"

CREATE_SYNC = [
    f"""CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.source_service := coalesce(NEW.source_service, NEW.created_by_service);
    NEW.created_by_service := coalesce(NEW.created_by_service, NEW.source_service);
    RETURN NEW;
END $$""",
    f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()",
]
DROP_SYNC = [f"DROP TRIGGER IF EXISTS {TRIGGER} ON orders", f"DROP FUNCTION IF EXISTS {TRIGGER}()"]


def copy_column(table: str, source: str, target: str) -> None:
    """``target := source`` where target is NULL, BATCH rows per transaction, until none is left.

    Runs inside an autocommit block, so each batch commits on its own and no lock outlives it; a row a
    request holds right now is skipped (SKIP LOCKED) and taken by a later batch.
    """
    statement = (
        f"UPDATE {table} SET {target} = {source} WHERE id IN (SELECT id FROM {table} "
        f"WHERE {target} IS NULL AND {source} IS NOT NULL LIMIT {BATCH} FOR UPDATE SKIP LOCKED)"
    )
    if context.is_offline_mode():
        op.execute(f"-- repeated until it updates no row\n{statement}")
        return
    bind = op.get_bind()
    remaining = sa.text(f"SELECT 1 FROM {table} WHERE {target} IS NULL AND {source} IS NOT NULL LIMIT 1")
    while True:
        if bind.execute(sa.text(statement)).rowcount:
            continue
        if bind.execute(remaining).first() is None:
            return
        time.sleep(0.05)  # only rows held by requests are left: let them commit
