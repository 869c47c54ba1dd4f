"""Run the sandbox provider: ``python -m apps.payment_sandbox [--port 8009]``."""

from __future__ import annotations

import argparse
import contextlib
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from apps.common.http_server import QuietServer
from apps.common.topology import PROCESSES
from apps.payment_sandbox.provider import SandboxSettings

SANDBOX = next(p for p in PROCESSES if p.name == "payment-sandbox")


def main() -> None:
    parser = argparse.ArgumentParser(description="the payment provider sandbox")
    SandboxSettings.from_env()  # a bad value stops the start here, naming it (the app reads them again)
    parser.add_argument("--port", type=int, default=SANDBOX.local_port())
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    # uvicorn.run's one-process path with the APIs' server: a 1-s tick instead of uvicorn's 100 ms (an idle
    # sandbox woke ten times a second), woken at once by SIGTERM.
    config = uvicorn.Config(
        "apps.payment_sandbox.app:create_app", factory=True, host=args.host, port=args.port, access_log=False
    )
    server = QuietServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does


if __name__ == "__main__":
    main()
