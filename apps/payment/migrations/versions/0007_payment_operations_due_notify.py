"""payment_operations notifies the payment worker when a pending operation is written or made due sooner.

The worker polled every 0.2 s (an idle queue: five checks a second, and an authorization waited ~0.1 s on
average for the next one). It now LISTENs on ``payment_operations_due`` and sleeps until the next operation is
due (apps/common/poller.py, DueCheck with a channel). These triggers send the notification from the writer's
transaction, so it arrives when the row is committed (a rolled-back write notifies nobody): every pending
operation inserted (the consumer's and the API's requests, a compensation written with an answer), and any
update that moves a pending operation's next_attempt_at earlier (an operator, a test, a lease ended by hand).
Leases (the worker's claim, the refund endpoint's) move it later and notify nobody; a backoff written with an
answer is earlier than the lease it ends and wakes the worker once, which then sleeps until it. Identical
notifications of one transaction are sent once (PostgreSQL folds them): a batch of the consumer's is one.

Revision ID: payment_0007
Revises: payment_0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "payment_0007"
down_revision = "payment_0006"
branch_labels = None
depends_on = None

CHANNEL = "payment_operations_due"  # apps/payment/worker.py CHANNEL


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION payment_operations_due_notify() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END\n"
        "$$"
    )
    op.execute(
        "CREATE TRIGGER payment_operations_due_written AFTER INSERT ON payment_operations "
        "FOR EACH ROW WHEN (NEW.outcome = 'pending') EXECUTE FUNCTION payment_operations_due_notify()"
    )
    op.execute(
        "CREATE TRIGGER payment_operations_due_sooner AFTER UPDATE OF next_attempt_at ON payment_operations "
        "FOR EACH ROW WHEN (NEW.outcome = 'pending' AND NEW.next_attempt_at < OLD.next_attempt_at) "
        "EXECUTE FUNCTION payment_operations_due_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER payment_operations_due_sooner ON payment_operations")
    op.execute("DROP TRIGGER payment_operations_due_written ON payment_operations")
    op.execute("DROP FUNCTION payment_operations_due_notify()")
