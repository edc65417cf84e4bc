"""The two load generators, both on the load core's side: wrk for B1 (it must be faster than the server) and a
Python driver for the delivery benchmarks (there the receivers' confirmations are measured; it keeps the gateway
busy)."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import LOAD_CORE, pinned

SCRIPT = Path(__file__).with_name("alarms.lua")
MARK = "BENCH-JSON "
CONNECTIONS = 64  # wrk's, as many as B3's clients


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    not_ok: int  # replies other than {"code": 0, ...}: a body pool too small shows up here as duplicates
    errors: int  # socket errors, timeouts and non-2xx statuses
    sample: str  # the first reply that was not ok
    raw: dict[str, Any]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, bodies: Path, seconds: float) -> Load:
    """wrk with one thread, bench/alarms.lua cycling through the signed bodies, one per line of ``bodies``."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(SCRIPT), url, "--", str(bodies)]  # fmt: skip
    done = subprocess.run(pinned(LOAD_CORE, command), capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(lines[-1].removeprefix(MARK))
    seconds_run = raw["duration_us"] / 1e6
    return Load(requests=raw["requests"], seconds=seconds_run, rps=raw["requests"] / seconds_run,
                p50_ms=raw["latency_us"]["p50"] / 1000, p99_ms=raw["latency_us"]["p99"] / 1000,
                not_ok=raw["not_ok"], errors=sum(raw["errors"].values()), sample=raw["sample"], raw=raw)  # fmt: skip


@dataclass(frozen=True)
class Posted:
    started: float  # time.time() before the first request
    finished: float  # after the last reply
    codes: Counter[str]  # reply code (or the HTTP status / error name) -> how many
    ok: frozenset[int]  # indexes of the bodies answered with code 0
    p99_ms: float | None  # of the replies' latencies (None: no reply)

    @property
    def seconds(self) -> float:
        return self.finished - self.started


async def post_all(
    url: str, bodies: Sequence[bytes], concurrency: int, deadline: float, rate: float | None = None
) -> Posted:
    """POST each body once, ``concurrency`` at a time, at most ``rate`` per second; stop at ``deadline`` seconds."""
    codes: Counter[str] = Counter()
    ok: set[int] = set()
    latencies: list[float] = []
    next_index = 0
    started, paced_from = time.time(), time.monotonic()
    stop_at = paced_from + deadline

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < len(bodies) and time.monotonic() < stop_at:
            index = next_index
            next_index += 1
            if rate and (delay := paced_from + index / rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            try:
                t0 = time.monotonic()
                async with session.post(url, data=bodies[index], headers={"Content-Type": "application/json"}) as r:
                    code = _code(r.status, await r.text())
                latencies.append(time.monotonic() - t0)
                codes[code] += 1
                if code == "0":
                    ok.add(index)
            except (aiohttp.ClientError, TimeoutError) as exc:
                codes[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    p99 = 1000 * statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else None
    return Posted(started, time.time(), codes, frozenset(ok), p99)


def _code(status: int, text: str) -> str:
    if status != 200:
        return f"HTTP {status}"
    try:
        return str(json.loads(text)["code"])
    except (ValueError, KeyError, TypeError):
        return "not JSON"
