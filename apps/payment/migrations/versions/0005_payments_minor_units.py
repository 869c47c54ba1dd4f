"""payments.amount_minor and payments.minor_exponent: the authorization as it was sent to the provider.

A capture or a refund was sent in minor units recomputed from the decimal amount with the currency table of
the day: ff6ffb9 (session 30) made the three-decimal currencies (BHD, KWD, ...) thousandths, so a payment
authorized as 1050 hundredths of a dinar before it would have been captured as 10500 after it (ten times
what the provider holds: refused). The code at this revision writes both on every new payment and sends
every later call of the payment in the exponent stored here (apps/payment/rules.sent_minor).

Existing rows are filled in batches of 1,000, each its own transaction (rows held right now are skipped and
taken by a later batch): the exponent is the one whose minor units are what the provider answered the
authorization with (its answer's ``amount``, kept in payment_operations.response), so a dinar authorized
before ff6ffb9 keeps 2; a payment whose authorization has no such answer (pending, declined, failed, an
answer without an amount) takes today's table: that is what its next call sends (pending), or no call
follows. The columns stay nullable: the release before this one keeps writing rows without them until it
is stopped, and its code sent today's table, which is what the code at this revision reads a NULL as. The
CHECKs (known exponent, minor units not negative) are added NOT VALID and validated after the backfill.

Revision ID: payment_0005
Revises: payment_0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outbox.migrations import fill_in_batches

revision = "payment_0005"
down_revision = "payment_0004"
branch_labels = None
depends_on = None

BATCH = 1000
CHECKS = {
    "ck_payments_amount_minor_nonnegative": "amount_minor >= 0",
    "ck_payments_minor_exponent_known": "minor_exponent IN (0, 2, 3)",
}
# Written out rather than imported from apps.common.pricing: a migration keeps meaning what it meant.
TODAY = (
    "CASE WHEN upper(currency) IN ('JPY', 'KRW', 'VND', 'CLP', 'ISK', 'UGX', 'XAF', 'XOF') THEN 0 "
    "WHEN upper(currency) IN ('BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND') THEN 3 ELSE 2 END"
)
FILL = f"""
UPDATE payments p
SET minor_exponent = x.exponent, amount_minor = round(p.amount * power(10::numeric, x.exponent))::bigint
FROM (
    SELECT b.id, coalesce(
        (SELECT e.exponent
         FROM payment_operations o CROSS JOIN (VALUES (0), (2), (3)) AS e(exponent)
         WHERE o.payment_id = b.id AND o.kind = 'authorize' AND o.outcome = 'succeeded'
           AND jsonb_typeof(o.response -> 'amount') = 'number'
           AND (o.response ->> 'amount')::numeric = round(b.amount * power(10::numeric, e.exponent))
         ORDER BY e.exponent = b.today DESC
         LIMIT 1),
        b.today) AS exponent
    FROM (
        SELECT id, amount, {TODAY} AS today FROM payments
        WHERE minor_exponent IS NULL ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED
    ) b
) x
WHERE p.id = x.id
RETURNING p.id
"""
LEFT = "SELECT 1 FROM payments WHERE minor_exponent IS NULL LIMIT 1"


def upgrade() -> None:
    op.add_column("payments", sa.Column("amount_minor", sa.BigInteger()))
    op.add_column("payments", sa.Column("minor_exponent", sa.SmallInteger()))
    for name, check in CHECKS.items():
        op.execute(f"ALTER TABLE payments ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
    with op.get_context().autocommit_block():
        fill_in_batches(FILL, LEFT)
        for name in CHECKS:
            op.execute(f"ALTER TABLE payments VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    op.drop_column("payments", "minor_exponent")
    op.drop_column("payments", "amount_minor")
