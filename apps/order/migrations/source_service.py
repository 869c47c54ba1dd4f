"""The expand/contract of orders.created_by_service -> orders.source_service (migrations 0005-0007).

Shared by the three migrations: the trigger that keeps both columns equal while both exist, and the
batched backfill (each batch its own transaction, rows a request holds skipped and retried).
"""

from __future__ import annotations

import time
import uuid

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

    Runs inside an autocommit block, so each batch commits on its own and no lock outlives it. Batches walk
    the primary key (each starts past the last id done, so none rescans the rows before it); a row a
    request holds right now is skipped (SKIP LOCKED) and taken by a pass from the start once the walk ends.
    """
    pending = f"{target} IS NULL AND {source} IS NOT NULL"
    statement = (
        f"UPDATE {table} SET {target} = {source} WHERE id IN (SELECT id FROM {table} WHERE {pending} "
        f"AND id > :after ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    if context.is_offline_mode():
        op.execute(f"-- from the lowest id, each batch after the last id it updated, until none is left\n{statement}")
        return
    bind = op.get_bind()
    remaining = sa.text(f"SELECT 1 FROM {table} WHERE {pending} LIMIT 1")
    after = uuid.UUID(int=0)
    while True:
        done = bind.execute(sa.text(statement), {"after": after}).scalars().all()
        if done:
            after = max(done)
            continue
        if bind.execute(remaining).first() is None:
            return
        after = uuid.UUID(int=0)  # only rows held by requests are left: let them commit, then walk again
        time.sleep(0.05)
