"""The Python load driver for the delivery benchmarks: post signed alarms with N clients, optionally paced.

(B1 uses wrk: there the load generator must be faster than the server. Here the receivers' confirmations are
what is measured, and the driver only has to keep the gateway busy.)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.request import urlopen

import aiohttp


@dataclass(frozen=True)
class Posted:
    started: float  # time.time() before the first request
    finished: float  # after the last reply
    codes: Counter[str]  # reply code (or the HTTP status / error name) -> how many
    sent: int
    ok: frozenset[int]  # indexes of the bodies answered with code 0
    p99_ms: float | None  # of the replies' latencies (None: no reply)

    @property
    def accepted(self) -> int:
        return self.codes.get("0", 0)


async def post_all(
    url: str, bodies: Sequence[bytes], concurrency: int, deadline: float, rate: float | None = None
) -> Posted:
    """POST each body once, ``concurrency`` at a time, at most ``rate`` per second; stop at ``deadline`` seconds."""
    codes: Counter[str] = Counter()
    ok: set[int] = set()
    latencies: list[float] = []
    sent = 0
    next_index = 0
    started = time.time()
    stop_at = time.monotonic() + deadline
    paced_from = time.monotonic()
    headers = {"Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, sent
        while next_index < len(bodies) and time.monotonic() < stop_at:
            index = next_index
            next_index += 1
            if rate:
                delay = paced_from + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent += 1
            try:
                t0 = time.monotonic()
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    text = await response.text()
                latencies.append(time.monotonic() - t0)
                code = _code(response.status, text)
                codes[code] += 1
                if code == "0":
                    ok.add(index)
            except (aiohttp.ClientError, TimeoutError) as exc:
                codes[type(exc).__name__] += 1

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    p99 = 1000 * statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else None
    return Posted(started, time.time(), codes, sent, frozenset(ok), p99)


def _code(status: int, text: str) -> str:
    if status != 200:
        return f"HTTP {status}"
    try:
        return str(json.loads(text)["code"])
    except (ValueError, KeyError, TypeError):
        return "not JSON"


def stats(control: str, run: str, need: Sequence[str], indexes: bool = False) -> dict[str, Any]:
    """What the receivers have of one run (see bench.receivers); with ``indexes``, which alarms each one has."""
    query = f"run={run}&need={','.join(need)}&indexes={int(indexes)}"
    with urlopen(f"{control}/stats?{query}", timeout=30) as response:  # noqa: S310
        data: dict[str, Any] = json.loads(response.read())
    return data


def wait_complete(
    control: str, run: str, need: Sequence[str], expected: int, timeout: float, idle: float = 0.0
) -> dict[str, Any]:
    """Poll until the receivers have ``expected`` alarms complete, or ``timeout`` seconds pass.

    With ``idle`` > 0 it also stops once nothing new has arrived for that long (a sender that is done).
    """
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while True:
        data = stats(control, run, need)
        if data["complete"] >= expected or time.monotonic() > deadline:
            return data
        if data["complete"] != last_count:
            last_count, last_change = data["complete"], time.monotonic()
        elif idle and time.monotonic() - last_change > idle:
            return data
        time.sleep(0.05)
