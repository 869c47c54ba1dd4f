"""The rate limit's count on its own Redis connection (apps/common/redis_store.py ``OwnConnectionScript``,
apps/common/redis_protocol.py) answers as redis-py's EVALSHA answered, on the real Redis; under uvloop (what
uvicorn runs) as under asyncio; and gives up within its timeout on a server that does not answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import uvloop
from redis.exceptions import InvalidResponse, ResponseError

from apps.common.rate_limit import _SYNC
from apps.common.redis_store import OwnConnectionScript, create_redis_client

pytestmark = pytest.mark.usefixtures("stack")

WINDOW_MS = 60_000


async def test_counts_and_windows_are_redis_pys_own() -> None:
    """The same calls on two fresh keys: the same counts, the same window left (to the second), whether the
    script was loaded already or not."""
    client = create_redis_client()
    script = OwnConnectionScript(client.connection_pool, _SYNC)
    ours, theirs = f"test:rl-conn:{uuid.uuid4()}", f"test:rl-conn:{uuid.uuid4()}"
    counted = client.register_script(_SYNC)
    try:
        for delta in (1, 3, 1, 2):
            mine = await script.run([ours], [WINDOW_MS, delta])
            reference = await counted(keys=[theirs], args=[WINDOW_MS, delta])
            assert mine[0] == reference[0]
            assert abs(mine[1] - reference[1]) < 1000
        assert mine[0] == 7
        stored = await client.get(ours)
        assert stored is not None and int(stored) == 7
    finally:
        await script.close()
        await client.delete(ours, theirs)
        await client.aclose()


async def test_a_script_redis_does_not_hold_is_sent_whole_and_errors_are_the_callers() -> None:
    client = create_redis_client()
    fresh = OwnConnectionScript(client.connection_pool, f"-- {uuid.uuid4()}\nreturn {{ARGV[1], 7}}")
    try:
        assert await fresh.run([], [5]) == [b"5", 7]  # NOSCRIPT first, then EVAL
        assert await fresh.run([], [6]) == [b"6", 7]  # EVALSHA now
        with pytest.raises(ResponseError):
            await fresh._call("NO-SUCH-COMMAND")
        assert await fresh.run([], [8]) == [b"8", 7]  # an error reply leaves the connection usable
        assert fresh._open == 1
    finally:
        await fresh.close()
        await client.aclose()


def test_under_uvloop_concurrent_counts_share_one_connection_in_order() -> None:
    """uvloop's transports are not asyncio's classes; 40 concurrent counts each get their own answer."""

    async def scenario() -> tuple[list[int], int, int]:
        client = create_redis_client()
        script = OwnConnectionScript(client.connection_pool, _SYNC)
        key = f"test:rl-conn:{uuid.uuid4()}"
        try:
            answers = await asyncio.gather(*(script.run([key], [WINDOW_MS, 1]) for _ in range(40)))
            idle_id = await script._call("CLIENT", "ID")
            await client.client_kill_filter(_id=str(idle_id))  # CLIENT KILL ID <id>
            after_kill = (await script.run([key], [WINDOW_MS, 1]))[0]
            return sorted(count for count, _ in answers), after_kill, script._open
        finally:
            await script.close()
            await client.delete(key)
            await client.aclose()

    counts, after_kill, open_connections = uvloop.run(scenario())
    assert counts == list(range(1, 41))
    assert after_kill == 41
    assert open_connections == 1


async def test_a_database_number_in_the_url_is_selected() -> None:
    client = create_redis_client("redis://127.0.0.1:6379/3")
    script = OwnConnectionScript(client.connection_pool, _SYNC)
    key = f"test:rl-conn:{uuid.uuid4()}"
    try:
        assert (await script.run([key], [WINDOW_MS, 1]))[0] == 1
        assert await client.get(key) == b"1"  # the client's db 3
    finally:
        await script.close()
        await client.delete(key)
        await client.aclose()


@pytest.fixture
async def mute_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that accepts and reads but never answers (a stalled Redis); what it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            received.append(data)
            if b"GARBAGE" in data:
                writer.write(b"?not resp\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, received


async def test_a_silent_server_times_out_and_the_connection_is_dropped(mute_server: tuple[int, list[bytes]]) -> None:
    port, received = mute_server
    client = create_redis_client(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
    script = OwnConnectionScript(client.connection_pool, _SYNC, timeout_s=0.1)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):  # an OSError: the limit fails open
            await script.run(["k"], [WINDOW_MS, 1])
        assert asyncio.get_running_loop().time() - started < 0.5
        assert script._open == 0
        assert b"EVALSHA" in b"".join(received)
        with pytest.raises(InvalidResponse):  # garbage is a RedisError: the limit fails open
            await script._call("GARBAGE")
        assert script._open == 0
    finally:
        await script.close()
        await client.aclose()


async def test_a_failed_connect_nobody_waited_for_is_retried_on_the_next_call() -> None:
    """Callers cancelled while Redis was unreachable: the next call tries again (it must not keep the old
    failure and fail open for good)."""
    client = create_redis_client("redis://127.0.0.1:1/0")  # nothing listens there
    script = OwnConnectionScript(client.connection_pool, _SYNC)
    waiting = asyncio.ensure_future(script.run(["k"], [WINDOW_MS, 1]))
    await asyncio.sleep(0)
    waiting.cancel()
    # The refused connect ends with nobody waiting on it, and is dropped (a fixed 0.05 s was assumed for that).
    deadline = asyncio.get_running_loop().time() + 10
    while script._connecting is not None:
        assert asyncio.get_running_loop().time() < deadline, "the failed connect is still held"
        await asyncio.sleep(0.01)
    good = create_redis_client()
    script.pool = good.connection_pool  # Redis "back": the next call connects afresh
    key = f"test:rl-conn:{uuid.uuid4()}"
    try:
        assert (await script.run([key], [WINDOW_MS, 1]))[0] == 1
    finally:
        await script.close()
        await good.delete(key)
        await good.aclose()
        await client.aclose()
