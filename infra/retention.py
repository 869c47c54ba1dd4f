"""Run the outbox/inbox retention job on every service database, then checkout's cart and session
lifecycle (apps/checkout/lifecycle.py): `just retention [--outbox-days N] [--inbox-days N]`."""

from __future__ import annotations

import argparse
import sys

from apps.checkout import lifecycle as checkout_lifecycle
from apps.common.topology import SERVICES, database_url
from outbox import retention


def main(argv: list[str]) -> int:
    # Its own parser, so `just retention --help` shows what the recipe takes: the library's asks for the
    # --database-url that this wrapper fills in for every service. Defaults stay the library's.
    parser = argparse.ArgumentParser(prog="just retention", description=__doc__)
    parser.add_argument("--outbox-days", type=int, help="delete outbox rows older than this (library default: 365)")
    parser.add_argument(
        "--inbox-days", type=int, help="delete inbox rows older than this (library default: 400; must exceed 365)"
    )
    args = parser.parse_args(argv)
    passed = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if value is not None]
    urls = [arg for spec in SERVICES for arg in ("--database-url", database_url(spec))]
    return retention.main([*urls, *passed]) or checkout_lifecycle.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
