"""Stop, crash and restart the stack's consumer processes from a test."""

from __future__ import annotations

import asyncio

from infra import proc, stack


def _process(name: str) -> stack.Process:
    return next(p for p in stack.app_processes() if p.name == name)


async def stop(name: str) -> None:
    await asyncio.to_thread(proc.stop, name)


async def kill(name: str) -> None:
    await asyncio.to_thread(proc.kill, name)


async def start(name: str, *extra_args: str) -> None:
    process = _process(name)
    if extra_args:
        process = stack.Process(process.name, [*process.argv, *extra_args], process.probe, process.url)
    await asyncio.to_thread(stack.start_process, process)
