"""The embedded store: one SQLite file, used from one worker thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from bridge.model import Group
from bridge.store.base import StoreError, dump_group, load_group

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (id TEXT NOT NULL, level TEXT NOT NULL, data TEXT NOT NULL,
                                   PRIMARY KEY (id, level));
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
"""
_PURGE_EVERY = 60.0


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._next_purge = 0.0

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite {self._path}: {exc}") from exc

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:  # connect lazily, so a store that comes back is picked up by itself
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return work(self._conn)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def get_group(self, id: str, level: str) -> Group | None:
        row = await self._run(
            lambda c: c.execute("SELECT data FROM groups WHERE id=? AND level=?", (id, level)).fetchone()
        )
        return None if row is None else load_group(row[0])

    async def put_group(self, group: Group) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO groups (id, level, data) VALUES (?, ?, ?)",
                (group.id, group.level, dump_group(group)),
            )
        )

    async def delete_group(self, id: str, level: str) -> bool:
        cursor = await self._run(lambda c: c.execute("DELETE FROM groups WHERE id=? AND level=?", (id, level)))
        return cursor.rowcount > 0

    async def list_groups(self) -> list[Group]:
        rows = await self._run(lambda c: c.execute("SELECT data FROM groups ORDER BY id, level").fetchall())
        return [load_group(row[0]) for row in rows]

    async def get(self, key: str) -> str | None:
        row = await self._run(
            lambda c: c.execute("SELECT value FROM kv WHERE key=? AND expires>?", (key, time.time())).fetchone()
        )
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, value, time.time() + ttl),
            )
        )

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        return await self._run(lambda c: self._put_new(c, key, value, ttl))

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
        await self._run(lambda c: c.execute("DELETE FROM kv WHERE key=?", (key,)))

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(lambda c: c.close())
        self._executor.shutdown(wait=True)
