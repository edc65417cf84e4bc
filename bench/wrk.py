"""wrk, pinned to its own core, with bench/alarms.lua cycling through pre-generated signed bodies."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import LOAD_CORE, pinned

SCRIPT = Path(__file__).with_name("alarms.lua")
MARK = "BENCH-JSON "


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


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, bodies: Path, seconds: float, connections: int, path: str = "/alarm_v2") -> Load:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(SCRIPT), url, "--", str(bodies), path,
    ]  # fmt: skip
    done = subprocess.run(pinned(LOAD_CORE, command), capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(lines[-1].removeprefix(MARK))
    seconds_run = raw["duration_us"] / 1e6
    return Load(
        requests=raw["requests"],
        seconds=seconds_run,
        rps=raw["requests"] / seconds_run,
        p50_ms=raw["latency_us"]["p50"] / 1000,
        p99_ms=raw["latency_us"]["p99"] / 1000,
        not_ok=raw["not_ok"],
        errors=sum(raw["errors"].values()),
        sample=raw["sample"],
        raw=raw,
    )
