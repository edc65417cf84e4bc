"""B1's floor: the least work the gateway's rules ask of an accepted alarm, in the plainest code, on the ceiling's
stack (Starlette, uvicorn). Not the gateway: a yardstick for how far the gateway is from what Python can do.

Per alarm, as the gateway must: the body parsed; the fields checked and the md5 signature verified; the dedup
fingerprint (sha256 of the fields but the time); the claim and one job per target (three) committed to a SQLite
file in WAL mode, synchronous=NORMAL, by one writer thread that commits the requests queued meanwhile together,
before the reply; the alarm's line rendered from the shipped Jinja2 template, once for its three targets (the
least a delivery renders: a digest lists an alarm by that line); the jobs marked done in the file. Left out, as
more than the least: the digests' headings, rate limits, metrics, request ids, the history trimmed, the outcomes
reported, groups looked up.

Usage: python -m bench.floor_app --port N
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.constants import SECRET
from bridge.codes import Code
from bridge.ingest.native import reply, sign

REQUIRED = ("id", "level", "dep", "env", "alert_level", "alert_time", "alert_business", "sign")
TARGETS = 3  # the bench group's: a DingTalk robot, a WeCom robot, an email list
SCHEMA = """
CREATE TABLE kv (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, payload TEXT NOT NULL);
"""
Write = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class Writer:
    """One thread, one connection: the writes queued while it commits go in the next transaction together."""

    def __init__(self, path: Path) -> None:
        self._writes: queue.SimpleQueue[Write] = queue.SimpleQueue()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        threading.Thread(target=self._serve, daemon=True).start()

    def write(self, work: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._writes.put((work, loop, future))
        return future

    def _serve(self) -> None:
        while True:
            batch = [self._writes.get()]
            while not self._writes.empty():
                batch.append(self._writes.get_nowait())
            self._conn.execute("BEGIN IMMEDIATE")
            results = [work(self._conn) for work, _, _ in batch]
            self._conn.execute("COMMIT")
            answers = [(future, result) for (_, _, future), result in zip(batch, results, strict=True)]
            batch[0][1].call_soon_threadsafe(_answer, answers)  # one event loop: the app's


def _answer(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in answers:
        future.set_result(result)


def _admit(conn: sqlite3.Connection, claim: str, jobs: list[tuple[str, str, str]]) -> bool:
    if conn.execute("INSERT OR IGNORE INTO kv VALUES (?, ?)", (claim, time.time() + 600)).rowcount == 0:
        return False
    conn.executemany("INSERT INTO jobs VALUES (?, ?, ?)", jobs)
    return True


def _settle(conn: sqlite3.Connection, ids: list[tuple[str]]) -> None:
    conn.executemany("UPDATE jobs SET state = 'done' WHERE id = ?", ids)


def create_app(store: Path) -> Starlette:
    writer = Writer(store)
    templates = jinja2.FileSystemLoader(Path(__file__).parents[1] / "templates")
    env = jinja2.Environment(loader=templates, autoescape=jinja2.select_autoescape(["html.j2"], default=False))
    line = env.get_template("native/digest_line.j2")
    counter = itertools.count()

    async def alarm_v2(request: Request) -> Response:
        fields = json.loads(await request.body())
        if not all(isinstance(fields.get(k), str) for k in REQUIRED):
            return reply(Code.BAD_PARAMS)
        if not hmac.compare_digest(sign(fields, SECRET), fields["sign"]):
            return reply(Code.BAD_SIGN)
        alarm = {k: v for k, v in fields.items() if k != "sign"}
        same = json.dumps({k: v for k, v in alarm.items() if k != "alert_time"}, sort_keys=True)
        claim = hashlib.sha256(same.encode()).hexdigest()
        payload, number = json.dumps(alarm), next(counter)
        jobs = [(f"{number}:{i}", "pending", payload) for i in range(TARGETS)]
        if not await writer.write(lambda c: _admit(c, claim, jobs)):
            return reply(Code.DUPLICATE)
        line.render(alarm=alarm)  # the dry run: rendered, and sent nowhere
        writer.write(lambda c: _settle(c, [(job[0],) for job in jobs]))
        return reply(Code.OK)

    return Starlette(routes=[Route("/alarm_v2", alarm_v2, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        uvicorn.run(create_app(Path(tmp) / "floor.db"), host=args.host, port=args.port, access_log=False,
                    log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
