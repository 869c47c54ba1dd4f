"""payments.minor_exponent may be 4: the two ISO 4217 units of a ten-thousandth (CLF, UYW).

apps.common.pricing took CLF and UYW as two-decimal codes, so a payment in them was authorized in hundredths (1.25
CLF sent as 125, which a provider reading CLF's own exponent charges as 0.0125). New payments in them store 4 and
are sent in ten-thousandths; payments stored with 2 keep being sent as they were authorized (rules.sent_minor).
The CHECK is replaced NOT VALID and validated outside the DDL's transaction, as payment_0005 added it. The
downgrade puts back (0, 2, 3) and fails at its validation if a payment with exponent 4 exists: the schema before
could not hold it.

Revision ID: payment_0006
Revises: payment_0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "payment_0006"
down_revision = "payment_0005"
branch_labels = None
depends_on = None

NAME = "ck_payments_minor_exponent_known"


def _replace_check(check: str) -> None:
    op.execute(f"ALTER TABLE payments DROP CONSTRAINT {NAME}")
    op.execute(f"ALTER TABLE payments ADD CONSTRAINT {NAME} CHECK ({check}) NOT VALID")
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TABLE payments VALIDATE CONSTRAINT {NAME}")


def upgrade() -> None:
    _replace_check("minor_exponent IN (0, 2, 3, 4)")


def downgrade() -> None:
    _replace_check("minor_exponent IN (0, 2, 3)")
