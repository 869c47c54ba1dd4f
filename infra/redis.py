"""Redis from Debian's package, no persistence (it holds caches and short-lived sessions only)."""

from __future__ import annotations

import os
import shutil
import socket

from infra import proc
from infra.paths import STATE

NAME = "redis"
PORT = int(os.environ.get("REDIS_PORT", "6379"))


def ready() -> bool:
    with socket.create_connection(("127.0.0.1", PORT), timeout=1) as conn:
        conn.sendall(b"*1\r\n$4\r\nPING\r\n")
        return conn.recv(64).startswith(b"+PONG")


def start() -> None:
    if proc.running(NAME):
        proc.wait_until(NAME, ready, timeout=10)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise proc.StartError("redis: redis-server is not installed (apt-get install -y redis-server)")
    data = STATE / "redis"
    data.mkdir(parents=True, exist_ok=True)
    pid = proc.spawn(
        NAME,
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ],
    )
    proc.wait_until(NAME, ready, timeout=20, pid=pid)


def stop() -> bool:
    return proc.stop(NAME)
