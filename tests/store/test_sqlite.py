"""What only the SQLite store has: the upgrades of its older file layouts, and the query plan of its lease."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.store import Admission, Job, State
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
    assert "jobs" not in tables and "deliveries" in tables


OLD_OUTBOX = """
CREATE TABLE outbox (id TEXT PRIMARY KEY, state TEXT NOT NULL, due REAL NOT NULL, created REAL NOT NULL,
                     payload TEXT NOT NULL, attempts INTEGER NOT NULL, detail TEXT NOT NULL, updated REAL NOT NULL,
                     code INTEGER NOT NULL);
CREATE INDEX outbox_due ON outbox (due) WHERE state = 'pending';
CREATE INDEX outbox_created ON outbox (state, created);
"""


async def test_jobs_of_the_one_row_layout_are_moved_and_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_OUTBOX)
        rows = [("a:0", "pending", 2.0, 1.0, '{"target": 0}', 2, "HTTP 502", 3.0, 502),
                ("b:1", "dead", 2.0, 1.5, '{"target": 1}', 9, "errcode 300001", 3.0, 300001)]  # fmt: skip
        conn.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    store = SqliteStore(str(path), history=100)
    try:
        (pending,) = await store.lease(10, lease=60)
        assert (pending.id, pending.payload, pending.attempts, pending.code) == ("a:0", '{"target": 0}', 2, 502)
        (dead,) = await store.jobs(State.DEAD, 10)
        assert (dead.id, dead.payload, dead.detail, dead.created) == ("b:1", '{"target": 1}', "errcode 300001", 1.5)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "outbox" not in tables and {"deliveries", "payloads"} <= tables


async def test_jobs_of_the_layout_before_progress_gain_it_and_are_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE deliveries (id TEXT PRIMARY KEY, state TEXT NOT NULL, due REAL NOT NULL, created REAL"
            " NOT NULL, attempts INTEGER NOT NULL, detail TEXT NOT NULL, updated REAL NOT NULL, code INTEGER NOT NULL);"
            "CREATE TABLE payloads (id TEXT PRIMARY KEY, payload TEXT NOT NULL);"
            "INSERT INTO deliveries VALUES ('a:0', 'pending', 2.0, 1.0, 2, 'HTTP 502', 3.0, 502);"
            """INSERT INTO payloads VALUES ('a:0', '{"target": 0}');"""
        )
    store = SqliteStore(str(path), history=100)
    try:
        (pending,) = await store.lease(10, lease=60)
        assert (pending.id, pending.payload, pending.attempts, pending.progress) == ("a:0", '{"target": 0}', 2, "")
        await store.settle([replace(pending, due=0, attempts=3, progress="1 5f3a9c1e")])
        (again,) = await store.lease(10, lease=60)
        assert (again.attempts, again.progress) == (3, "1 5f3a9c1e")
    finally:
        await store.close()


async def test_a_lease_reads_only_due_jobs_however_large_the_backlog(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), history=100)
    await store.ping()  # the file and its tables exist
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_LEASE}", (0.0, 0.0, 500)))
    assert "USING INDEX deliveries_due" in plan and "TEMP B-TREE" not in plan, plan


async def test_the_trim_of_done_jobs_forgets_their_payloads_too(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path), history=5)
    try:
        jobs = [Job(f"alarm{n}:0", f'{{"target": 0, "n": {n}}}', created=float(n)) for n in range(20)]
        await store.admit([Admission(jobs)], lease=0)
        await store.settle([replace(j, state=State.DONE) for j in jobs[:19]])
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        payloads = [row[0] for row in conn.execute("SELECT payload FROM payloads ORDER BY id")]
        deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert len(payloads) == deliveries < 20 and payloads[-1] == '{"target": 0, "n": 19}'


async def test_a_job_whose_payload_is_missing_is_leased_with_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path), history=100)
    try:
        await store.admit([Admission([Job("a:0", '{"target": 0}', created=1.0), Job("b:0", "{}", created=2.0)])], 0)
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM payloads WHERE id = 'a:0'")  # damaged by hand, say
        leased = await store.lease(10, lease=60)  # the outbox dead-letters the unreadable one
        assert sorted((j.id, j.payload) for j in leased) == [("a:0", ""), ("b:0", "{}")]
        assert [j.id for j in await store.jobs(None, 10)] == ["b:0", "a:0"]
    finally:
        await store.close()
