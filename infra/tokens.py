"""`just token ROLE [--customer ID] [--service NAME] [--scope S]... [--ttl S]`: a bearer token from the
local issuer (apps/common/auth_issuer.py; keys made on first use under .stack/keys/), printed alone on
stdout so that ``curl -H "Authorization: Bearer $(just token admin)"`` works.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from apps.common.auth import ROLES
from apps.common.auth_issuer import mint
from apps.common.auth_service import SERVICE_SCOPES


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="just token", description=__doc__)
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--customer", type=uuid.UUID, help="the customer's id (role customer: required)")
    parser.add_argument("--service", help="the calling service (role service: required)")
    parser.add_argument("--scope", action="append", help="a scope (role service; default: the service's own)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    args = parser.parse_args(argv)
    if args.role == "customer" and args.customer is None:
        parser.error("a customer token needs --customer ID")
    if args.role == "service" and not args.service:
        parser.error("a service token needs --service NAME")
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    scopes = args.scope if args.scope is not None else SERVICE_SCOPES.get(args.service or "", ())
    token = mint(
        args.role,
        customer_id=args.customer,
        service=args.service if args.role == "service" else None,
        scopes=scopes if args.role == "service" else (),
        ttl_s=args.ttl,
    )
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
