"""Run the outbox/inbox retention job on every service database, then checkout's cart and session
lifecycle (apps/checkout/lifecycle.py): `just retention [--outbox-days N]`."""

from __future__ import annotations

import sys

from apps.checkout import lifecycle as checkout_lifecycle
from apps.common.topology import SERVICES, database_url
from outbox import retention

if __name__ == "__main__":
    urls = [arg for spec in SERVICES for arg in ("--database-url", database_url(spec))]
    sys.exit(retention.main([*urls, *sys.argv[1:]]) or checkout_lifecycle.main())
