"""The embedded store's worker thread: the one user of the SQLite file, so the event loop never blocks.

The thread commits in groups: the calls that queue up while it works run together in one transaction (each
in a savepoint of its own, so one failing call fails alone), and none is answered before that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bridge.store.base import StoreError
from bridge.store.sqlite_file import BUSY, prepare

T = TypeVar("T")
_GROUP_COMMIT = 256  # calls at most in one transaction
Call = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class Worker:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-store", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((work, loop, future))
        try:
            return await future
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite {self._path}: {exc}") from exc

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._calls.get()]
            while len(batch) < _GROUP_COMMIT:
                try:
                    batch.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            calls = [call for call in batch if call is not None]
            stopping = len(calls) < len(batch)  # close() put None
            ready = [call for call in calls if not call[2].cancelled()]  # a caller that gave up is skipped
            if ready:
                self._commit(ready)

    def _commit(self, batch: list[Call]) -> None:
        results: list[tuple[asyncio.Future[Any], object, BaseException | None]] = []
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes too
            for work, _, future in batch:
                conn.execute("SAVEPOINT call")
                try:
                    results.append((future, work(conn), None))
                    conn.execute("RELEASE call")
                except Exception as exc:  # the call fails alone; the thread goes on serving the others
                    conn.execute("ROLLBACK TO call")
                    conn.execute("RELEASE call")
                    results.append((future, None, exc))
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._disconnect()
            results = [(future, None, exc) for _, _, future in batch]
        # Answered only once committed, with one wake-up of each event loop for the whole group.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object, BaseException | None]]] = {}
        for (_, loop, _), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append(result)
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_answer, answers)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:  # connect lazily, so a store that comes back is picked up by itself
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=BUSY)
            try:
                prepare(conn)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)
        self._disconnect()


def _answer(answers: list[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
