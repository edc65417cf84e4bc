"""What only the SQLite store has: its file layout's upgrade, and the query plan of its lease."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bridge.store import State
from bridge.store.sqlite import _LEASE, SqliteStore

pytestmark = pytest.mark.anyio

OLD_JOBS = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, due REAL NOT NULL,
                   created REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX jobs_due ON jobs (due) WHERE state = 'pending';
CREATE INDEX jobs_created ON jobs (state, created);
"""


def old_job(id: str, state: str, attempts: int, detail: str) -> tuple[str, str, float, float, str]:
    data = {"id": id, "payload": '{"target": 0}', "created": 1.0, "due": 2.0, "state": state,
            "attempts": attempts, "detail": detail, "updated": 3.0}  # fmt: skip
    return (id, state, 2.0, 1.0, json.dumps(data))  # files of that time had no "code" yet


async def test_jobs_of_the_first_layout_are_moved_and_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_JOBS)
        rows = [old_job("a:0", "pending", 2, "HTTP 502"), old_job("b:0", "dead", 9, "errcode 300001")]
        conn.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", rows)
    store = SqliteStore(str(path), history=100)
    try:
        (pending,) = await store.lease(10, lease=60)
        assert (pending.id, pending.payload, pending.attempts, pending.detail) == (
            "a:0",
            '{"target": 0}',
            2,
            "HTTP 502",
        )
        (dead,) = await store.jobs(State.DEAD, 10)
        assert (dead.id, dead.attempts, dead.code) == ("b:0", 9, 0)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "jobs" not in tables and "outbox" in tables


async def test_a_lease_reads_only_due_jobs_however_large_the_backlog(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=100)
    await store.ping()  # the file and its tables exist
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_LEASE}", (0.0, 0.0, 500)))
    assert "USING INDEX outbox_due" in plan and "TEMP B-TREE" not in plan, plan
