"""Run the sandbox provider: ``python -m apps.payment_sandbox [--port 8009]``."""

from __future__ import annotations

import argparse
import os

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description="the payment provider sandbox")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PAYMENT_SANDBOX_PORT", "8009")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run("apps.payment_sandbox.app:create_app", factory=True, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
