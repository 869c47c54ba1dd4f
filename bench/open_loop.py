"""An open-loop load generator: requests leave at a fixed rate whatever the answers do.

A closed loop (wrk, a fixed number of connections) sends the next request only after an answer, so a slow
server is offered less load and its slowness hides (coordinated omission). Here request ``i`` is due at
``start + i / rate``; its latency counts from that moment, so time spent queued in the client counts too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass
class OpenLoopResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # transport errors and statuses >= 400
    late_starts: int = 0  # requests the generator itself sent more than 10 ms after their due time
    # Diagnostics, one per request in due order: (due, sent, answered) on time.time()'s clock (to line up
    # with the services' log timestamps) and the status (0: transport error). Latency stays due -> answered.
    trace: list[tuple[float, float, float, int]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.latencies_ms)


async def run_open_loop(
    url: str,
    bodies: list[bytes],
    rate: float,
    *,
    tokens: list[str] | None = None,
    max_in_flight: int = 512,
    timeout_s: float = 30.0,
) -> OpenLoopResult:
    """POST each body to ``url`` at ``rate`` per second (with ``tokens[i]`` as its bearer token when given);
    return latencies from each request's due time."""
    result = OpenLoopResult()
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        start = time.perf_counter() + 0.1
        wall_offset = time.time() - time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            due = start + i / rate
            await _sleep_until(due)
            if time.perf_counter() - due > 0.010:
                result.late_starts += 1
            auth = {"Authorization": f"Bearer {tokens[i]}"} if tokens else {}
            tasks.append(asyncio.create_task(_post(http, url, body, auth, due, result.statuses)))
        for due, sent, answered, status in await asyncio.gather(*tasks):
            result.latencies_ms.append((answered - due) * 1000)
            result.errors += 0 if 0 < status < 400 else 1
            result.trace.append((due + wall_offset, sent + wall_offset, answered + wall_offset, status))
    return result


async def _sleep_until(due: float, clock: Callable[[], float] = time.perf_counter) -> None:
    delay = due - clock()
    if delay > 0:
        await asyncio.sleep(delay)


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, auth: dict[str, str], due: float, statuses: dict[int, int]
) -> tuple[float, float, float, int]:
    """(due, sent, answered, status) of one request on perf_counter's clock; sent is when this task ran."""
    sent = time.perf_counter()
    try:
        async with http.post(url, data=body, headers=auth) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    statuses[status] = statuses.get(status, 0) + 1
    return due, sent, time.perf_counter(), status


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1) if ordered else float("nan")


async def _steady_orders(rate: float, seconds: float, component: str, trace: str | None) -> dict[str, float]:
    # Imported here: bench.orders imports this module for its fixed-rate phase.
    from bench.cpu import cpu_by_component, cpu_snapshot
    from bench.orders import customer_token, order_body, set_up
    from tests.support.http import service_url

    count = int(rate * seconds)
    product_a, product_b, customers = await set_up(count, register=False)
    bodies = [order_body(c, product_a, product_b) for c in customers]
    tokens = [customer_token(c) for c in customers]
    print(f"load starts: {rate}/s for {seconds}s at {time.time():.3f}", flush=True)
    before = cpu_snapshot()
    result = await run_open_loop(f"{service_url('order')}/api/orders", bodies, rate, tokens=tokens)
    used = cpu_by_component(cpu_snapshot(), before)
    if trace:
        write_trace(result, trace)
    latencies = result.latencies_ms
    return {
        "sent": result.sent,
        "errors": result.errors,
        "late_starts": result.late_starts,
        "p50_ms": _percentile(latencies, 0.5),
        "p90_ms": _percentile(latencies, 0.9),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": round(max(latencies), 1) if latencies else float("nan"),
        f"{component}_cpu_ms_per_order": round(used.get(component, 0.0) * 1000 / max(result.sent, 1), 2),
    }


def write_trace(result: OpenLoopResult, path: str) -> None:
    """One line per request: due, sent and answered (epoch seconds), its latency and status, to line the slow
    ones up with the services' logs and the host's samples."""
    lines = [f"{d:.4f} {s:.4f} {a:.4f} {(a - d) * 1000:.1f} {status}\n" for d, s, a, status in result.trace]
    Path(path).write_text("".join(lines))


def main() -> None:
    """A steady open-loop order load (for profiling a worker, or the tail at a fixed rate):

    uv run --frozen python -m bench.open_loop --rate 20 --seconds 30
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--component", default="order-api", help="whose CPU per order to report (.stack/pids/)")
    parser.add_argument("--trace", help="write each request's due, sent and answered times to this file")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_steady_orders(args.rate, args.seconds, args.component, args.trace))))


if __name__ == "__main__":
    main()
