"""The embedded store: one SQLite file, its calls run in the worker thread (bridge.store.sqlite_worker)."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from bridge.model import Group
from bridge.store.base import Admission, Job, Late, State, dump_group, load_group
from bridge.store.sqlite_worker import Worker

# A job is a row of deliveries, rewritten by every settle, and its payload, written once: the rows a settle
# rewrites stay small, so a commit writes few pages.
_STATE = "id, state, due, created, attempts, detail, updated, code, progress, lane, leased"
# A job whose payload is missing (a damaged file) reads as an empty one: the outbox dead-letters it, saying why.
_COLUMNS = "d.id, state, due, created, attempts, detail, updated, code, progress, lane, coalesce(payload, '')"
_JOINED = "deliveries d LEFT JOIN payloads USING (id)"
# The partial index by name: the planner would otherwise take (state, created) and sort the whole backlog.
_DUE = "SELECT id FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending' AND due <= ?2 ORDER BY due LIMIT ?3"
_LEASE = f"UPDATE deliveries SET due = ?1, leased = ?1 WHERE id IN ({_DUE}) RETURNING id"  # noqa: S608
# A lane's pending jobs under no live lease, oldest first: what a storm summary takes (see Store.take).
_TAKE = (
    "UPDATE deliveries SET due = ?1, leased = ?1 WHERE id IN (SELECT id FROM deliveries INDEXED BY deliveries_lane"
    " WHERE state = 'pending' AND lane = ?2 AND leased <= ?3 ORDER BY created LIMIT ?4) RETURNING id"
)
# The leased jobs whole, in one statement (RETURNING cannot join their payloads).
_LEASED = f"SELECT {_COLUMNS} FROM {_JOINED} WHERE d.id IN (SELECT value FROM json_each(?))"  # noqa: S608
_GROUP = "SELECT data FROM groups WHERE id=? AND level=?"
_PURGE_EVERY = 60.0


class SqliteStore:
    def __init__(self, path: str, history: int) -> None:
        self._history = history
        self._next_purge = 0.0
        self._done_since_trim = 0
        self._worker = Worker(path)

    async def ping(self) -> None:
        await self._worker.run(lambda c: c.execute("SELECT 1").fetchone())

    async def get_group(self, id: str, level: str) -> Group | None:
        row = await self._worker.run(lambda c: c.execute(_GROUP, (id, level)).fetchone())
        return None if row is None else load_group(row[0])

    async def put_group(self, group: Group, replacing: Group | None) -> bool:
        return await self._worker.run(lambda c: self._put_group(c, group, replacing))

    def _put_group(self, conn: sqlite3.Connection, group: Group, replacing: Group | None) -> bool:
        row = conn.execute(_GROUP, group.key).fetchone()
        if (None if row is None else load_group(row[0])) != replacing:
            return False
        conn.execute("INSERT OR REPLACE INTO groups VALUES (?, ?, ?)", (*group.key, dump_group(group)))
        return True

    async def delete_group(self, id: str, level: str) -> bool:
        cursor = await self._worker.run(lambda c: c.execute("DELETE FROM groups WHERE id=? AND level=?", (id, level)))
        return cursor.rowcount > 0

    async def list_groups(self) -> list[Group]:
        rows = await self._worker.run(lambda c: c.execute("SELECT data FROM groups ORDER BY id, level").fetchall())
        return [load_group(row[0]) for row in rows]

    async def get(self, key: str) -> str | None:
        row = await self._worker.run(
            lambda c: c.execute("SELECT value FROM kv WHERE key=? AND expires>?", (key, time.time())).fetchone()
        )
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._worker.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, value, time.time() + ttl),
            )
        )

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        return await self._worker.run(lambda c: self._put_new(c, key, value, ttl))

    def _put_new(self, conn: sqlite3.Connection, key: str, value: str, ttl: float) -> bool:
        now = time.time()
        if now >= self._next_purge:
            conn.execute("DELETE FROM kv WHERE expires<=?", (now,))
            self._next_purge = now + _PURGE_EVERY
        cursor = conn.execute(
            "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
            " SET value=excluded.value, expires=excluded.expires WHERE kv.expires<=?",
            (key, value, now + ttl, now),
        )
        return cursor.rowcount == 1

    async def delete(self, key: str) -> None:
        await self._worker.run(lambda c: c.execute("DELETE FROM kv WHERE key=?", (key,)))

    async def admit(self, admissions: Sequence[Admission], lease: float, before: float = math.inf) -> list[bool]:
        due = time.time() + lease

        def admit(conn: sqlite3.Connection) -> list[bool]:
            if time.time() > before:
                raise Late("the write came after the deadline")
            return [self._admit(conn, a, due) for a in admissions]

        return await self._worker.run(admit)

    def _admit(self, conn: sqlite3.Connection, admission: Admission, due: float) -> bool:
        if admission.stale and all(self._present(conn, key) for key in admission.stale):
            return False
        if admission.claim is not None and not self._put_new(conn, admission.claim, "1", admission.ttl):
            return False
        self._write(conn, admission.jobs, due)
        marks = [(key, time.time() + admission.ttl) for key in admission.marks]
        conn.executemany("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, '1', ?)", marks)
        return True

    def _present(self, conn: sqlite3.Connection, key: str) -> bool:
        return conn.execute("SELECT 1 FROM kv WHERE key=? AND expires>?", (key, time.time())).fetchone() is not None

    def _write(self, conn: sqlite3.Connection, jobs: Sequence[Job], due: float) -> None:
        """New jobs; those without a due of their own leased to the caller until ``due``."""
        states = [
            (j.id, j.state.value, j.due or due, j.created, j.attempts, j.detail, j.updated, j.code, j.progress, j.lane,
             0.0 if j.due else due)
            for j in jobs
        ]  # fmt: skip
        conn.executemany(f"INSERT OR REPLACE INTO deliveries ({_STATE}) VALUES ({', '.join('?' * 11)})", states)  # noqa: S608
        conn.executemany(
            "INSERT OR REPLACE INTO payloads (id, payload) VALUES (?, ?)", [(j.id, j.payload) for j in jobs]
        )

    async def lease(self, limit: int, lease: float) -> list[Job]:
        now = time.time()
        return await self._worker.run(lambda c: self._lease(c, (now + lease, now, limit)))

    def _lease(self, conn: sqlite3.Connection, args: tuple[object, ...], statement: str = _LEASE) -> list[Job]:
        ids = [row[0] for row in conn.execute(statement, args).fetchall()]
        return [_job(row) for row in conn.execute(_LEASED, (json.dumps(ids),)).fetchall()]

    async def held(self, lane: str) -> int:
        sql = "SELECT count(*) FROM deliveries INDEXED BY deliveries_lane WHERE state = 'pending' AND lane = ?"
        row = await self._worker.run(lambda c: c.execute(sql, (lane,)).fetchone())
        return int(row[0])

    async def take(self, lane: str, limit: int, lease: float) -> list[Job]:
        now = time.time()
        return await self._worker.run(lambda c: self._lease(c, (now + lease, lane, now, limit), _TAKE))

    async def summarize(self, absorbed: Sequence[Job], summary: Job, key: str, value: str, ttl: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            self._settle(conn, absorbed)
            self._write(conn, [summary], summary.due)
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)", (key, value, time.time() + ttl)
            )

        await self._worker.run(write)

    async def settle(self, jobs: Sequence[Job]) -> None:
        await self._worker.run(lambda c: self._settle(c, jobs))

    def _settle(self, conn: sqlite3.Connection, jobs: Sequence[Job]) -> None:
        rows = [(j.state.value, j.due, j.attempts, j.detail, j.updated, j.code, j.progress, j.id) for j in jobs]
        conn.executemany(
            "UPDATE deliveries SET state = ?, due = ?, attempts = ?, detail = ?, updated = ?, code = ?, progress = ?,"
            " leased = 0 WHERE id = ?",
            rows,
        )
        self._done_since_trim += sum(1 for j in jobs if j.state is State.DONE)
        if self._done_since_trim > self._history // 10:  # forget done jobs beyond the history, now and then
            conn.execute(
                "DELETE FROM deliveries WHERE state = 'done' AND created < (SELECT created FROM deliveries"
                " WHERE state = 'done' ORDER BY created DESC LIMIT 1 OFFSET ?)",
                (self._history - 1,),
            )
            self._done_since_trim = 0

    async def job(self, id: str) -> Job | None:
        sql = f"SELECT {_COLUMNS} FROM {_JOINED} WHERE id = ?"  # noqa: S608
        row = await self._worker.run(lambda c: c.execute(sql, (id,)).fetchone())
        return None if row is None else _job(row)

    async def jobs(self, state: State | None, limit: int, before: float | None = None) -> list[Job]:
        where = " AND ".join(["created < ?"] + (["state = ?"] if state else []))
        args = (float("inf") if before is None else before, *([state.value] if state else []), limit)
        sql = f"SELECT {_COLUMNS} FROM {_JOINED} WHERE {where} ORDER BY created DESC LIMIT ?"  # noqa: S608
        return [_job(row) for row in await self._worker.run(lambda c: c.execute(sql, args).fetchall())]

    async def depth(self) -> int:
        row = await self._worker.run(
            lambda c: c.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()
        )
        return int(row[0])

    async def acquire(self, key: str, limit: int, window: float) -> float:
        return await self._worker.run(lambda c: self._acquire(c, key, limit, window))

    def _acquire(self, conn: sqlite3.Connection, key: str, limit: int, window: float) -> float:
        now = time.time()
        conn.execute("DELETE FROM slots WHERE key = ? AND at <= ?", (key, now - window))
        taken = conn.execute("SELECT count(*), min(at) FROM slots WHERE key = ?", (key,)).fetchone()
        if taken[0] >= limit:
            return float(taken[1] + window - now)
        conn.execute("INSERT INTO slots (key, at) VALUES (?, ?)", (key, now))
        return 0.0

    async def risks(self) -> list[str]:
        return []  # every accepted alarm is committed to the file before its reply

    async def close(self) -> None:
        await self._worker.close()


def _job(row: Sequence[Any]) -> Job:
    id, state, due, created, attempts, detail, updated, code, progress, lane, payload = row
    return Job(id, payload, created, due, State(state), attempts, detail, updated, code, progress, lane)
