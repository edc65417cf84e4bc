"""How the outbox takes jobs to deliver: first attempts in a lane per target, and due jobs leased by the worker.

First attempts go one delivery at a time per target: alarms that arrive meanwhile are merged into the next. The
worker leases what is due (retries, jobs a rate limit held back, jobs whose holder died) in batches, several in
flight at a time. Every delivery is a task of its own, waited for at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from bridge import metrics
from bridge.config import DeliverySettings
from bridge.intake import Entry, FirstAttempt
from bridge.ledger import Ledger
from bridge.model import Outcome
from bridge.store import Job, Store, StoreError
from bridge.work import Work, read_leased

logger = logging.getLogger(__name__)

T = TypeVar("T")
PARALLEL = 16  # leased batches in flight per process
Lane = tuple[int, int]  # a target of a group object: id(group), index
Results = dict[str, Outcome | None]  # an outcome per job id, None where it is still waiting


def _merged(results: Iterable[Results]) -> Results:
    return {job_id: outcome for result in results for job_id, outcome in result.items()}


class Lanes:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        settings: Callable[[], DeliverySettings],
        deliver: Callable[[Work], Awaitable[Results]],
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._settings = settings  # the settings in force
        self._deliver = deliver  # messages for a work's jobs until each is in one, or waits
        self._lanes: dict[Lane, list[tuple[Work, asyncio.Future[Results]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def first_attempt(self, entries: list[Entry], leased_until: float) -> FirstAttempt:
        """The first attempts at the entries' jobs (leased to this process when they were written), per target."""
        works: dict[Lane, Work] = {}
        for entry in entries:
            for i, (job, target) in enumerate(zip(entry.admission.jobs, entry.group.targets, strict=True)):
                if job.due:  # held back by a rate limit: written due later
                    continue
                work = works.setdefault((id(entry.group), i), Work(entry.group, target, [], [], leased_until))
                work.jobs.append(job)
                work.alarms.append(entry.alarm)
        return self._spawn(self._deliver_in_lanes(works))

    async def _deliver_in_lanes(self, works: dict[Lane, Work]) -> Results:
        return _merged(await asyncio.gather(*(self._queue_in_lane(lane, work) for lane, work in works.items())))

    def _queue_in_lane(self, lane: Lane, work: Work) -> asyncio.Future[Results]:
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        if lane not in self._lanes:
            self._lanes[lane] = []
            self._spawn(self._run_lane(lane))
        self._lanes[lane].append((work, future))
        return future

    async def _run_lane(self, lane: Lane) -> None:
        queued: list[tuple[Work, asyncio.Future[Results]]] = []
        try:
            while queued := self._lanes[lane]:
                self._lanes[lane] = []
                first = queued[0][0]
                jobs = [j for work, _ in queued for j in work.jobs]
                alarms = [a for w, _ in queued for a in w.alarms]
                until = min(w.leased_until for w, _ in queued)
                results = await self._deliver(Work(first.group, first.target, jobs, alarms, until))
                for _, future in queued:
                    if not future.done():
                        future.set_result(results)
        finally:  # cancelled at shutdown: nobody waits for these any more (their jobs are in the outbox)
            waiting = self._lanes.pop(lane, [])
            for _, future in queued + waiting:
                future.cancel()
            if waiting:  # never started: handed back at once, not when their lease ends
                await asyncio.shield(self._ledger.hand_back(j for w, _ in waiting for j in w.jobs))

    async def run(self) -> None:
        """The worker loop: lease due jobs and deliver them, until ``stop``."""
        while not self._stopping:
            if len(self._tasks) >= PARALLEL:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            settings, started = self._settings(), time.monotonic()  # one reload's settings for the whole round
            lease = settings.lease
            try:
                jobs = await self._store.lease(settings.batch, lease=lease)
            except StoreError as exc:
                metrics.STORE_ERRORS.inc()
                logger.warning("outbox: cannot lease jobs: %s", exc)
                jobs = []
            except Exception:  # a damaged record, or a bug: the worker goes on, or no retry would ever be sent
                logger.exception("outbox: leasing jobs failed")
                jobs = []
            if jobs:
                self._spawn(self._process(jobs, started + lease))
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.poll)

    async def stop(self) -> None:
        """Stop leasing, let in-flight deliveries finish up to the shutdown deadline, hand back the rest."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self._settings().shutdown)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _process(self, jobs: Sequence[Job], leased_until: float) -> Results:
        """Deliver leased jobs, merged per target."""
        works, unreadable = read_leased(jobs, leased_until)
        if unreadable:
            await self._ledger.bury(unreadable)
        return _merged(await asyncio.gather(*(self._deliver(w) for w in works)))
