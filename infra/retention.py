"""Run the outbox/inbox retention job on every service database: `just retention [--outbox-days N]`."""

from __future__ import annotations

import sys

from apps.common.topology import SERVICES, database_url
from outbox import retention

if __name__ == "__main__":
    urls = [arg for spec in SERVICES for arg in ("--database-url", database_url(spec))]
    sys.exit(retention.main([*urls, *sys.argv[1:]]))
