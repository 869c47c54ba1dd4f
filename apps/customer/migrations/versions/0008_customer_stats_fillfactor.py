"""customer_stats keeps 15 % of each page free, so a customer's next order updates its row in place.

The projection is one row per customer, updated by every order it counts; the row's only index is its
primary key, whose value never changes, so each update could be HOT (no new index entry), but only 15 %
were: the inserts had packed every page full, and an update with no room on its page moves the row and
adds a primary-key entry on a random index page, often that page's first change since a checkpoint (a
full-page image, read again by each logical walsender). fillfactor 85 leaves the room on pages written
from now on; existing pages gain it as they are rewritten (VACUUM FULL is not worth its lock here).

Revision ID: customer_0008
Revises: customer_0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "customer_0008"
down_revision = "customer_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A storage parameter: SHARE UPDATE EXCLUSIVE for an instant, no rewrite, reads and writes go on.
    op.execute("ALTER TABLE customer_stats SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("ALTER TABLE customer_stats RESET (fillfactor)")
