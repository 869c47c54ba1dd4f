"""Run the outbox/inbox retention job on every service database, then checkout's cart and session
lifecycle (apps/checkout/lifecycle.py): `just retention [--outbox-days N] [--inbox-days N]`."""

from __future__ import annotations

import argparse
import sys

from apps.checkout import lifecycle as checkout_lifecycle
from apps.common.topology import SERVICES, database_url
from outbox import retention

# The events' replay window (the topics keep them a year): nothing younger may leave the outbox.
MIN_OUTBOX_DAYS = 365


def main(argv: list[str]) -> int:
    # Its own parser, so `just retention --help` shows what the recipe takes: the library's asks for the
    # --database-url that this wrapper fills in for every service. Defaults stay the library's.
    parser = argparse.ArgumentParser(prog="just retention", description=__doc__)
    parser.add_argument(
        "--outbox-days",
        type=int,
        help=f"delete outbox rows older than this (library default: 365; at least {MIN_OUTBOX_DAYS})",
    )
    parser.add_argument(
        "--inbox-days", type=int, help="delete inbox rows older than this (library default: 400; must exceed 365)"
    )
    args = parser.parse_args(argv)
    if args.outbox_days is not None and args.outbox_days < MIN_OUTBOX_DAYS:
        # `just retention --outbox-days 0` emptied three service outboxes on the shared stack (2026-11-27).
        parser.error(
            f"--outbox-days must be at least {MIN_OUTBOX_DAYS}: the outbox is the audit log, kept a year; the "
            "warehouse finds its earlier restock answers there (apps/warehouse/restock.py); and a point-in-time "
            "recovery re-publishes recent rows from it"
        )
    passed = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if value is not None]
    urls = [arg for spec in SERVICES for arg in ("--database-url", database_url(spec))]
    return retention.main([*urls, *passed]) or checkout_lifecycle.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
