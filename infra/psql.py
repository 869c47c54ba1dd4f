"""psql on one service's database as that service's own role: `just psql order -c "select 1"`."""

from __future__ import annotations

import os
import sys

from apps.common.topology import BY_NAME, pg_host, pg_port


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in BY_NAME:
        raise SystemExit(f"usage: just psql SERVICE [psql args...]; services: {', '.join(BY_NAME)}")
    spec = BY_NAME[argv[0]]
    env = {**os.environ, "PGPASSWORD": spec.password()}
    args = ["psql", "-h", pg_host(), "-p", str(pg_port()), "-U", spec.role, "-d", spec.database, *argv[1:]]
    os.execvpe("psql", args, env)


if __name__ == "__main__":
    main(sys.argv[1:])
