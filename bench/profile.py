"""The B1 hot path under py-spy: the gateway (SQLite store, dry-run) under the B1 wrk load, sampled from outside.

Writes the collapsed stacks (``profile-b1.txt``, for any flame-graph tool) and reports the functions with the
most samples, by own time and including callees, and own time summed by area (templates, JSON, the store...).
Samples of threads waiting on their queues (the store's, the executor's) are left out: py-spy counts them as
active, but such a thread is then blocked (on the queue, or on the GIL the event loop holds), not computing.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import Options, Section, gateway, workdir
from bench.load import Load, wrk, wrk_available
from bench.peers import gateway_config, write_bodies

logger = logging.getLogger(__name__)
# Leaf frames of threads blocked on their queues: the SQLite store's (its own code is a loop around the queue's
# get) and the default executor's.
_QUEUE_WAITS = {"Worker._serve (bridge/store/sqlite_worker.py)", "_worker (concurrent/futures/thread.py)"}
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*?)(?::\d+)?\)$")
# Own time is put in the first area whose pattern its file matches.
AREAS = [
    ("Jinja2 rendering", r"^jinja2/|\.j2$|^markupsafe/"),
    ("template up-to-date checks (os.stat)", r"genericpath|posixpath"),
    ("JSON encode/decode", r"^json/"),
    ("SQLite store (worker thread)", r"^bridge/store/sqlite|sqlite3"),
    ("Redis client", r"^redis/|^bridge/store/redis"),
    ("thread hand-off (executor, futures, GIL)", r"^concurrent/futures|^threading\.py|^asyncio/futures\.py|^queue\.py"),
    ("HTTP server (uvicorn, Starlette)", r"^uvicorn/|^starlette/|httptools|^h11/"),
    ("dataclasses (asdict, replace, __init__)", r"^dataclasses\.py|<string>"),
    ("config parsing (groups from job payloads)", r"^bridge/config(_file|_sections)?\.py"),
    ("asyncio loop and tasks", r"^asyncio/|uvloop"),
    ("uuid, hashlib, random", r"^uuid\.py|hashlib|^random\.py"),
    ("email composition (stdlib email)", r"^email/"),
    ("SMTP client (aiosmtplib)", r"^aiosmtplib/"),
    ("HTTP client (aiohttp, yarl)", r"^aiohttp/|^yarl/|^multidict/"),
    ("TLS (ssl)", r"^ssl\.py"),
    ("metrics", r"^prometheus_client/"),
    ("logging", r"^logging/"),
    ("bridge (other)", r"^bridge/"),
]


def run(opts: Options) -> Section:
    section = Section()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None or not wrk_available():
        section.details["not_available"] = "py-spy or wrk is not installed (make bench installs both)"
        return section
    out = opts.logs.parent / "profile-b1.txt"
    seconds = opts.profile_seconds
    load: list[Load] = []
    with workdir(opts.scratch) as tmp:
        bodies = write_bodies(tmp / "bodies.txt", opts.b1_pool)
        with gateway(gateway_config(tmp), opts.logs / "profile-gateway.log") as server:
            thread = threading.Thread(target=lambda: load.append(wrk(server.url, bodies, seconds + 2)))
            thread.start()
            command = [spy, "record", "--pid", str(server.process.pid), "--duration", str(round(seconds)), "--rate",
                       "250", "--format", "raw", "--output", str(out), "--threads"]  # fmt: skip
            recorded = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
            thread.join(timeout=seconds + 120)
    if recorded.returncode != 0 or not out.exists():
        section.details["not_available"] = f"py-spy failed: {recorded.stderr[-300:]}"
        return section
    section.details = summarize(out)
    section.details["stacks_file"] = str(out)
    section.details["rps_while_sampled"] = load[0].rps if load else None
    return section


def render(details: dict[str, Any], top: int = 12) -> str:
    """The profile's summary for the terminal: own time by area, and the functions with the most."""
    lines = [f"B1 hot path, py-spy ({details['samples']} samples, both threads): own time by area"]
    lines += [f"  {a['share']:6.1%}  {a['name']}" for a in details["areas"]]
    lines.append("functions with the most own time")
    lines += [f"  {a['share']:6.1%}  {a['name']}" for a in details["own"][:top]]
    return "\n".join(lines)


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text)
    if match is None:
        return text, ""
    path = re.sub(r".*site-packages/|.*/lib/python3\.\d+/", "", match["path"])
    path = re.sub(r".*?/(bridge|bench|tests)/", r"\1/", path)
    return f"{match['function']} ({path})", path


def summarize(stacks: Path, top: int = 20) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = waiting = 0
    for line in stacks.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        thread = frames.pop(0) if frames[0].startswith("thread (") else "?"
        if not frames:
            continue
        parsed = [_frame(f) for f in frames]
        if parsed[-1][0] in _QUEUE_WAITS:  # a thread blocked on its queue (or on the GIL after it): no CPU
            waiting += samples
            continue
        threads[thread] += samples
        total += samples
        own[parsed[-1][0]] += samples
        for name in {name for name, _ in parsed}:
            inclusive[name] += samples
        leaf = parsed[-1][1]
        areas[next((area for area, pattern in AREAS if re.search(pattern, leaf)), "other")] += samples

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"name": k, "share": v / total} for k, v in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "queue_wait_samples_left_out": waiting,
        "threads": {k: v / total for k, v in threads.items()} if total else {},
        "own": share(own, top),
        "inclusive": share(inclusive, top * 2),
        "areas": share(areas, len(AREAS) + 1),
    }
