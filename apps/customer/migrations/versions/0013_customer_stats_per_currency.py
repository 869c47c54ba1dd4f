"""customer_stats per (customer, currency): an amount is only ever added to amounts of its own currency.

total_spent and refunded_amount had no currency: a customer who paid 100.00 USD and 10000 JPY read 10100.00
(P, session 31). Now a row per customer and currency holds that currency's orders, cancellations, returns and
sums (`spent`, `refunded`); the API lists them (docs/decisions.md, "Customer stats per currency").

Existing rows cannot be attributed here: the sums were added from events that carried their currency, but
nothing in customer_db kept it (the inbox keeps event ids, not payloads). So every existing row becomes the
row of currency XXX (ISO 4217's code for "no currency"): its counts stay right, its sums are unattributed,
never labelled with a currency they may not be in. `just replay customer-stats --to-earliest --rebuild`
rebuilds every row from the events, in their currencies, and no XXX row is left after it.

The money columns are renamed on purpose (total_spent -> spent, refunded_amount -> refunded): code of the
release before adds any currency to them, and after this revision its statements name a column that no
longer exists, SQLSTATE 42703, which outbox.retry takes as "schema ahead of the code": its consumer retries
its batch (no dead letter, nothing applied into the new rows) until it is restarted on this release, whose
fold keys on the currency. Without the renames, its upsert's ON CONFLICT (customer_id) would fail with
42P10, an error it dead-letters.

Steps, none holding a lock that blocks the consumer for long:
1. `currency` added with the constant default 'XXX' (catalog only, no rewrite; the release before still runs).
2. The new primary key's unique index built CONCURRENTLY (1.47M rows on the shared stack).
3. One short transaction: the renames, the default dropped, the key swapped onto that index, and
   CHECK (currency ~ '^[A-Z]{3}$') NOT VALID (a malformed code in an event is refused by the database, that
   event's fault: a dead letter, as analytics refuses it).
4. The CHECK validated (a scan that blocks neither reads nor writes).

Updates stay HOT: the key (customer_id, currency) never changes and nothing else is indexed.

Revision ID: customer_0013
Revises: customer_0012
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "customer_0013"
down_revision = "customer_0012"
branch_labels = None
depends_on = None

_NEW_KEY = "uq_customer_stats_customer_currency"
_PRIMARY = "pk_customer_stats"
_CHECK = "ck_customer_stats_currency_iso"


def upgrade() -> None:
    op.execute("ALTER TABLE customer_stats ADD COLUMN IF NOT EXISTS currency varchar(3) NOT NULL DEFAULT 'XXX'")
    with op.get_context().autocommit_block():
        # A build that failed before (an invalid index) would be taken as done by IF NOT EXISTS.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NEW_KEY}")
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {_NEW_KEY} ON customer_stats (customer_id, currency)")
    op.execute("ALTER TABLE customer_stats RENAME COLUMN total_spent TO spent")
    op.execute("ALTER TABLE customer_stats RENAME COLUMN refunded_amount TO refunded")
    op.execute(
        f"ALTER TABLE customer_stats ALTER COLUMN currency DROP DEFAULT, DROP CONSTRAINT {_PRIMARY}, "
        f"ADD CONSTRAINT {_PRIMARY} PRIMARY KEY USING INDEX {_NEW_KEY}, "
        f"ADD CONSTRAINT {_CHECK} CHECK (currency ~ '^[A-Z]{{3}}$') NOT VALID"
    )
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TABLE customer_stats VALIDATE CONSTRAINT {_CHECK}")


def downgrade() -> None:
    # Back to one row per customer: a customer's currencies are added together again, which is what the
    # schema before this revision did (its sums had no currency). One transaction under the table's lock,
    # the old key's index built in it (a second currency row inserted between a merge and a concurrent
    # build would fail the build).
    op.execute("LOCK TABLE customer_stats IN ACCESS EXCLUSIVE MODE")
    op.execute(
        """
        WITH merged AS (
            DELETE FROM customer_stats s
            WHERE s.customer_id IN (SELECT customer_id FROM customer_stats GROUP BY customer_id HAVING count(*) > 1)
            RETURNING s.*
        )
        INSERT INTO customer_stats (customer_id, currency, orders_count, cancelled_count, spent, last_order_at,
                                    returns_count, refunded, updated_at)
        SELECT customer_id, 'XXX', sum(orders_count), sum(cancelled_count), sum(spent), max(last_order_at),
               sum(returns_count), sum(refunded), max(updated_at)
        FROM merged GROUP BY customer_id
        """
    )
    op.execute(
        f"ALTER TABLE customer_stats DROP CONSTRAINT {_CHECK}, DROP CONSTRAINT {_PRIMARY}, "
        f"ADD CONSTRAINT {_PRIMARY} PRIMARY KEY (customer_id)"
    )
    op.execute("ALTER TABLE customer_stats RENAME COLUMN spent TO total_spent")
    op.execute("ALTER TABLE customer_stats RENAME COLUMN refunded TO refunded_amount")
    op.execute("ALTER TABLE customer_stats DROP COLUMN currency")
