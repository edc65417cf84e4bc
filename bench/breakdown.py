"""B1 in process: where an alarm's CPU goes, apart from uvicorn and the sockets.

The ASGI app is called directly, 64 alarms in flight as under B1's 64 connections, on one core: the bare
endpoint of B1's ceiling, B1's floor (bench/floor_app.py: the least work the gateway's rules ask of an alarm),
then the gateway (dry-run delivery, the bench group, the SQLite store) three ways, each adding one part of the
path to the one before:

- request path: the store and the first attempts replaced by ones that do nothing at all, so what remains is
  parsing and checking the alarm, the dedup fingerprint, the jobs built, waiting for the write, the reply;
- + delivery: the first attempts for real (digests rendered, "sent" to the log, outcomes built), the store
  still doing nothing;
- gateway: all of it, the store included (the claim and the jobs written, rate-limit slots, outcomes recorded).

Each stage runs in its own process; the figure is that process's CPU per alarm (the store's thread included).
Usage (one stage, JSON on stdout): python -m bench.breakdown STAGE ALARMS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

from starlette.applications import Starlette

from bench.harness import SERVER_CORE, Figure, Options, Section, median, rounds, run_json
from bench.peers import bodies, gateway_config, rate_limits

logger = logging.getLogger(__name__)
STAGES = ("ceiling", "floor", "request path", "+ delivery", "gateway")
IN_FLIGHT = 64
WARM = 2000  # alarms before the measured ones: imports, caches and the store's first pages
OK = b'{"code": 0}'
App = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def run(opts: Options) -> Section:
    """The stages in turn, ``opts.b1_rounds`` times; the median CPU per alarm of each, against the bare endpoint."""
    runs: dict[str, list[dict[str, Any]]] = {stage: [] for stage in STAGES}
    for round_ in range(opts.b1_rounds):
        for stage in STAGES:
            logger.info("B1 in process, round %d/%d: %s", round_ + 1, opts.b1_rounds, stage)
            command = [sys.executable, "-m", "bench.breakdown", stage, str(opts.b1_breakdown_alarms)]
            runs[stage].append(run_json(command, SERVER_CORE, 600))
    bare = median(runs["ceiling"], "cpu_us")
    section = Section(details={"alarms": opts.b1_breakdown_alarms, "runs": runs})
    for stage in STAGES[1:]:
        bad = sum(r["not_ok"] for r in runs[stage])
        note = f"{rounds(opts.b1_rounds)}, {opts.b1_breakdown_alarms} alarms each"
        note += f"; {bad} replies not code 0" if bad else ""
        section.figures.append(Figure("B1", f"in process: CPU per alarm, {stage}", "µs", median(runs[stage], "cpu_us"),
                                      bare, "bare endpoint", note=note))  # fmt: skip
    return section


def _stubbed(stage: str) -> ExitStack:
    """The parts of the gateway that ``stage`` leaves out, replaced by ones that do nothing."""
    from bridge.lanes import Lanes
    from bridge.store.sqlite import SqliteStore

    async def admit(self: SqliteStore, admissions: Sequence[Any], lease: float) -> list[bool]:
        return [True] * len(admissions)

    async def settle(self: SqliteStore, jobs: Sequence[Any]) -> None:
        return None

    async def acquire(self: SqliteStore, key: str, limit: int, window: float) -> float:
        return 0.0

    def first_attempt(self: Lanes, entries: Sequence[Any], leased_until: float) -> asyncio.Future[dict[str, Any]]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        done.set_result({})
        return done

    stack = ExitStack()
    if stage == "request path":
        stack.enter_context(mock.patch.object(Lanes, "first_attempt", first_attempt))
    if stage in ("request path", "+ delivery"):
        for name, stub in (("admit", admit), ("settle", settle), ("acquire", acquire)):
            stack.enter_context(mock.patch.object(SqliteStore, name, stub))
    return stack


async def _call(app: App, body: bytes) -> bytes:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/alarm_v2", "raw_path": b"/alarm_v2", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    reply: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # asked again only to watch for a disconnect, which never comes
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            reply.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(reply)


async def _measure(app: App, bodies: list[bytes]) -> tuple[float, float, int]:
    """CPU and wall seconds for the bodies, IN_FLIGHT at a time, and how many replies were not code 0."""
    queue = iter(bodies)
    not_ok = 0

    async def caller() -> None:
        nonlocal not_ok
        for body in queue:
            not_ok += (await _call(app, body)) != OK

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return time.process_time() - cpu, time.perf_counter() - wall, not_ok


async def _stage(
    stage: str, alarms: int, warm_up: int = WARM, storm: bool = False, given: list[bytes] | None = None
) -> dict[str, Any]:
    """One stage, measured: its CPU and wall time an alarm. ``given``: signed bodies to take instead of signing them
    here (enough for ``alarms`` and ``warm_up``)."""
    count = alarms + warm_up
    signed = given[:count] if given else bodies(count)
    warm, measured = signed[alarms:], signed[:alarms]
    with tempfile.TemporaryDirectory() as tmp, _stubbed(stage):
        app = _app(stage, Path(tmp), storm)
        async with app.router.lifespan_context(app):
            await _measure(app, warm)
            cpu, wall, not_ok = await _measure(app, measured)
    return {"cpu_us": 1e6 * cpu / alarms, "wall_us": 1e6 * wall / alarms, "not_ok": not_ok}


def _app(stage: str, tmp: Path, storm: bool) -> Starlette:
    if stage == "ceiling":
        from bench.baseline_app import app

        return app
    if stage == "floor":
        from bench.floor_app import create_app as floor

        return floor(tmp / "floor.db")
    from bridge.app import create_app
    from bridge.config_file import load

    # A storm's shape, as B3's: the two robots, held by their limits all the while (the first message apart).
    if not storm:
        return create_app(load(gateway_config(tmp)))
    held = rate_limits(1, "1h")
    return create_app(load(gateway_config(tmp, channels=("dingtalk", "wecom"), rate_limits=held)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("alarms", type=int)
    parser.add_argument("--warm", type=int, default=WARM, help="alarms before the measured ones")
    parser.add_argument("--storm", action="store_true", help="the two robots, held by their rate limits")
    parser.add_argument("--bodies", type=Path, help="signed bodies, one a line, instead of signing them here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import uvloop  # the loop uvicorn runs the gateway on

    given = args.bodies.read_bytes().splitlines() if args.bodies else None
    print(json.dumps(uvloop.run(_stage(args.stage, args.alarms, args.warm, args.storm, given))))


if __name__ == "__main__":
    main()
