"""Accepted alarms on their way into the outbox: written to the store together, their callers answered.

Alarms that arrive while a write is under way are written together in the next store call; the outbox then
makes their first attempts together, and each caller is answered when that attempt ends or its wait runs out.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bridge.model import Alarm, Group, Outcome
from bridge.store import Admission, Job, Late, Store, StoreError
from bridge.storm import stands_alone
from bridge.upstreams import rate_key

logger = logging.getLogger(__name__)

FirstAttempt = asyncio.Task[dict[str, Outcome | None]]  # outcomes by job id (None where delivery goes on)


@dataclass(frozen=True)
class Admitted:
    """An alarm whose jobs are written, and its first attempt (shared with the alarms beside it): finished, or
    still going on in the background once the caller's wait ran out."""

    jobs: Sequence[Job]
    attempt: FirstAttempt


@dataclass(frozen=True)
class Entry:
    """An alarm waiting to be written."""

    alarm: Alarm
    group: Group
    admission: Admission
    wait: float
    deadline: float  # epoch seconds: the caller answers 3000 if the jobs are not written by then
    behind: bool  # queued while a write was under way: waiting on the store since
    admitted: asyncio.Future[Admitted | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def jobs_for(alarm: Alarm, group: Group, dues: Sequence[float] = ()) -> list[Job]:
    """An accepted alarm's jobs, one per target of its group; with ``dues``, each due then if not 0 (see
    ``Store.admit``)."""
    now = time.time()
    # Unique, not secret, and in time order: the store's index on ids then grows at its end instead of at
    # random places (half the cost of writing a job to SQLite). No system call per alarm.
    alarm_id = f"{time.time_ns():016x}{random.getrandbits(64):016x}"
    shared = f'{{"alarm": {json.dumps(alarm.__dict__, ensure_ascii=False)}, "group": {group.encoded}}}'
    alone = stands_alone(alarm.extra)  # in no lane: a storm's turn never takes it to count (see Store.take)
    return [  # the alarm and group are serialized once; each job adds its target's index
        Job(
            id=f"{alarm_id}:{i}",
            payload=f'{{"target": {i}, {shared[1:]}',
            created=now,
            due=dues[i] if dues else 0.0,
            lane="" if alone else rate_key(target) or "",
        )
        for i, target in enumerate(group.targets)
    ]


def _fail(batch: list[Entry], error: StoreError | TimeoutError) -> None:
    for entry in batch:
        if not entry.admitted.done():
            entry.admitted.set_exception(error)


def _release(entries: list[Entry], timer: asyncio.TimerHandle | None, attempt: FirstAttempt) -> None:
    """The callers' wait is over, the attempt having ended or their time run out: each gets its Admitted (a
    caller that has gone is skipped: its alarm is delivered all the same)."""
    if timer is not None:
        timer.cancel()
    for entry in entries:
        if not entry.admitted.done():
            entry.admitted.set_result(Admitted(entry.admission.jobs, attempt))


class Intake:
    def __init__(
        self,
        store: Store,
        store_timeout: float,
        lease: Callable[[], float],
        first_attempt: Callable[[list[Entry], float], FirstAttempt],
    ) -> None:
        self._store = store
        self._store_timeout = store_timeout
        self._lease = lease  # how long the written jobs are leased to this process for their first attempt, now
        self._first_attempt = first_attempt
        self._queued: list[Entry] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = False

    async def admit(
        self, alarm: Alarm, group: Group, admission: Admission, wait: float, deadline: float
    ) -> Admitted | None:
        """Write the alarm's jobs (see ``jobs_for``) unless its dedup claim is taken or it is stale (None then),
        and start the first attempt, awaited up to ``wait`` seconds from the write.

        By ``deadline`` (epoch seconds) the jobs are written or this raises: ``Late`` when they certainly were
        not, another StoreError or TimeoutError when the store may still write them."""
        entry = Entry(alarm, group, admission, wait, deadline, self._writing)
        self._queued.append(entry)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued())
        return await entry.admitted

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                now = time.time()
                # Alarms that waited behind a write have waited on the store: past their deadline they are answered
                # 3000, and not written. The others waited only for this process to come to them (a burst arriving
                # at once): their time with the store starts now.
                _fail(
                    [e for e in batch if e.behind and e.deadline <= now], Late("the store did not come to it in time")
                )
                batch = [
                    e if e.behind else replace(e, deadline=max(e.deadline, now + self._store_timeout))
                    for e in batch
                    if not e.behind or e.deadline > now
                ]
                if not batch:
                    continue
                self._writing = True
                try:
                    await self._write(batch)
                except (StoreError, TimeoutError) as exc:
                    _fail(batch, exc)
                except BaseException as exc:  # a bug, or the loop is closing: no caller is left waiting either way
                    _fail(batch, StoreError("internal error (logged)"))
                    if not isinstance(exc, Exception):
                        raise
                    logger.exception("intake: writing accepted alarms failed")
                finally:
                    self._writing = False
        finally:
            self._writer = None

    async def _write(self, batch: list[Entry]) -> None:
        lease, started = self._lease(), time.monotonic()
        deadline = min(e.deadline for e in batch)
        # The store writes nothing once its clock passes a tenth of the timeout before the deadline: that tenth is
        # for its answer to come back, so that an alarm answered 3000 is, but for a stall in between, not written.
        async with asyncio.timeout(deadline - time.time()):
            written = await self._store.admit(
                [e.admission for e in batch], lease=lease, before=deadline - self._store_timeout / 10
            )
        attempt = self._first_attempt([e for e, ok in zip(batch, written, strict=True) if ok], started + lease)
        waits: dict[float, list[Entry]] = {}
        for entry, ok in zip(batch, written, strict=True):
            if ok:
                waits.setdefault(max(entry.wait, 0.0), []).append(entry)
            elif not entry.admitted.done():  # the caller may have gone
                entry.admitted.set_result(None)
        # The callers answer when the attempt ends or their wait runs out: one timer for all who wait as long.
        loop = asyncio.get_running_loop()
        for wait, entries in waits.items():
            if wait == 0:
                _release(entries, None, attempt)
                continue
            timer = loop.call_later(wait, _release, entries, None, attempt)
            attempt.add_done_callback(functools.partial(_release, entries, timer))
