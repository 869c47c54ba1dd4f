"""The calling service's own bearer token, for its calls to other services (``apps/common/service_client.py``).

- Production: ``AUTH_SERVICE_TOKEN_FILE`` (a file the identity provider's agent keeps fresh; re-read when
  it changes) or ``AUTH_SERVICE_TOKEN``. The token names the service and its scopes itself.
- Development and tests: minted by the local issuer (``apps/common/auth_issuer.py``) for this process's
  service (``SERVICE_NAME``, else read from the command line that started it: ``apps.<service>...``) with
  the scopes of :data:`SERVICE_SCOPES`, renewed when half its life is gone.

A scope is ``<service called>:<what>``; a route admits a service token only with its scope
(``allow(..., service="customer:read")``, apps/common/auth.py).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from apps.common.auth_issuer import mint
from apps.common.topology import BY_NAME

__all__ = ["SERVICE_SCOPES", "calling_service", "service_token_header"]

# What each service calls on the others (development tokens; an identity provider grants the same), and
# nothing more: customer:data-keys hands out any person's raw data key, so only the services that ask that route
# hold it (checkout seals checkout.completed, order's consumer opens it, returns asks whether a buyer was
# erased; checked by tests/unit/test_service_scopes.py).
SERVICE_SCOPES: Final[dict[str, tuple[str, ...]]] = {
    "order": ("customer:read", "customer:data-keys"),
    "checkout": ("customer:read", "customer:data-keys"),
    "returns": ("order:read", "payment:read", "customer:data-keys"),
    "payment": (),
    "warehouse": (),
    "catalog": (),
    # GET /api/customers/{id}/access-log gathers the access logs of the services holding that person's data.
    "customer": ("order:access-log", "checkout:access-log", "returns:access-log"),
    "analytics": (),
}
TOKEN_TTL_S: Final = 3600
_ARGV_SERVICE: Final = re.compile(r"apps[./](?P<name>[a-z_]+)")


def calling_service() -> str:
    """This process's service: ``SERVICE_NAME``, else the ``apps.<service>`` module that started it."""
    named = os.environ.get("SERVICE_NAME")
    if named:
        return named
    for arg in sys.argv:
        for match in _ARGV_SERVICE.finditer(arg):
            if match["name"] in BY_NAME:
                return match["name"]
    return "unknown"


@dataclass
class _Minted:
    token: str
    renew_at: float


_minted: dict[str, _Minted] = {}
_file_cache: tuple[tuple[int, int, int], str] | None = None


def _from_file(path: Path) -> str:
    """The file's token, read again when its (mtime_ns, size, inode) changes. An agent may rewrite it in
    place (truncate, then write) within one tick of the kernel's coarse clock: the mtime alone then kept a
    read caught between the two until the next rotation, an hour of empty bearers (S, session 30). An empty
    read is that moment: it is not remembered, and the token held meanwhile is still the valid one."""
    global _file_cache
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if _file_cache is None or _file_cache[0] != stamp:
        text = path.read_text().strip()
        if not text:
            return "" if _file_cache is None else _file_cache[1]
        _file_cache = (stamp, text)
    return _file_cache[1]


def _minted_token(name: str) -> str:
    now = time.time()
    minted = _minted.get(name)
    if minted is None or minted.renew_at <= now:
        token = mint("service", service=name, scopes=SERVICE_SCOPES.get(name, ()), ttl_s=TOKEN_TTL_S, now=now)
        minted = _minted[name] = _Minted(token, now + TOKEN_TTL_S / 2)
    return minted.token


def service_token(caller: str | None = None) -> str:
    """The token of ``caller`` (default: this process's service, :func:`calling_service`)."""
    if path := os.environ.get("AUTH_SERVICE_TOKEN_FILE"):
        return _from_file(Path(path))
    return os.environ.get("AUTH_SERVICE_TOKEN") or _minted_token(caller or calling_service())


def service_token_header(caller: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(caller)}"}
