"""Durable delivery: an accepted alarm's jobs stay in the store until every target has the alarm.

The process that accepts an alarm makes the first attempt itself (the jobs are leased to it when they are
written); workers in every replica lease the jobs that are due: retries, jobs held back by a rate limit,
and jobs whose holder died. Jobs due together for one target are merged into digest messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from bridge import metrics
from bridge.config import DeliverySettings, Node, parse_group
from bridge.dispatch import Dispatcher
from bridge.model import Alarm, Channel, Group, Message, Outcome, Target
from bridge.render import Renderer, split
from bridge.store import Job, State, Store, StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")
PARALLEL = 16  # leased batches in flight per process

# What one message's body may carry, in UTF-8 bytes, leaving room for the request around it.
BUDGETS = {"dingtalk-robot": 18000, "dingtalk-app": 18000, "wecom-app": 2000, "wecom-appchat": 2000, "email": 500_000}
WECOM_ROBOT_BUDGETS = {"text": 2000, "markdown": 4000}


@dataclass(frozen=True)
class Attempt:
    """The first attempt at an alarm, as far as it got before the reply was due."""

    outcomes: list[Outcome]  # one per target that was tried
    waiting: int  # targets still in delivery: in flight at the bound, or held back by a rate limit
    warnings: list[str]


@dataclass(frozen=True)
class _Work:
    """Jobs for one target, decoded."""

    group: Group
    target: Target
    jobs: list[Job]
    alarms: list[Alarm]


def budget(target: Target, group: Group) -> int:
    return WECOM_ROBOT_BUDGETS[group.format] if target.kind == "wecom-robot" else BUDGETS[target.kind]


def rate_key(target: Target) -> str | None:
    """Which upstream limit a target counts against: per robot, or per app and recipient list."""
    if target.kind not in ("dingtalk-robot", "wecom-robot", "wecom-app"):
        return None
    digest = hashlib.sha256(json.dumps(asdict(target), sort_keys=True).encode()).hexdigest()[:24]
    return f"{target.kind}:{digest}"


class Outbox:
    def __init__(self, store: Store, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._renderer = renderer
        self._settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def reconfigure(self, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings) -> None:
        """A reloaded config: deliveries from now on use the new senders, templates and settings."""
        self._dispatcher, self._renderer, self._settings = dispatcher, renderer, settings

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def enqueue(self, alarm: Alarm, group: Group) -> list[Job]:
        """Write the alarm's jobs, one per target, to the outbox (StoreError if it cannot), leased to us."""
        now = time.time()
        alarm_id = uuid.uuid4().hex
        shared = json.dumps({"alarm": asdict(alarm), "group": group.to_dict()}, ensure_ascii=False)
        jobs = [  # the alarm and group are serialized once; each job adds its target's index
            Job(id=f"{alarm_id}:{i}", payload=f'{{"target": {i}, {shared[1:]}', created=now)
            for i in range(len(group.targets))
        ]
        await self._store.enqueue(jobs, lease=self._settings.lease)
        return jobs

    async def attempt(self, alarm: Alarm, group: Group, jobs: list[Job], wait: float) -> Attempt:
        """The first attempt at enqueued jobs, awaited up to ``wait`` seconds; it goes on in the background."""
        channels = {t.channel for t in group.targets} if group.templates else set()  # only overrides can fail
        warnings = [w for c in channels for w in self._renderer.message(alarm, group, c)[1]]
        works = [_Work(group, target, [job], [alarm]) for job, target in zip(jobs, group.targets, strict=True)]
        attempt = self._spawn(self._deliver_all(works, jobs))
        done, _ = await asyncio.wait({attempt}, timeout=wait) if wait > 0 else (set(), set())
        if not done:
            return Attempt([], len(jobs), sorted(set(warnings)))
        outcomes = [o for o in attempt.result() if o is not None]
        return Attempt(outcomes, len(jobs) - len(outcomes), sorted(set(warnings)))

    async def run(self) -> None:
        """The worker loop: lease due jobs and deliver them, until ``stop``."""
        while not self._stopping:
            if len(self._tasks) >= PARALLEL:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                jobs = await self._store.lease(self._settings.batch, lease=self._settings.lease)
            except StoreError as exc:
                metrics.STORE_ERRORS.inc()
                logger.warning("outbox: cannot lease jobs: %s", exc)
                jobs = []
            if jobs:
                self._spawn(self._process(jobs))
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll)

    async def stop(self) -> None:
        """Stop leasing, let in-flight deliveries finish up to the shutdown deadline, hand back the rest."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self._settings.shutdown)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _process(self, jobs: Sequence[Job]) -> list[Outcome | None]:
        """Deliver jobs, merged per target; one outcome per job (None where it is still waiting)."""
        batches: dict[str, list[Job]] = {}
        for job in jobs:
            data = json.loads(job.payload)
            key = json.dumps([data["group"]["id"], data["group"]["level"], data["group"]["channels"][data["target"]]])
            batches.setdefault(key, []).append(job)
        return await self._deliver_all([self._decode(b) for b in batches.values()], jobs)

    async def _deliver_all(self, works: list[_Work], jobs: Sequence[Job]) -> list[Outcome | None]:
        results = await asyncio.gather(*(self._deliver(w) for w in works))
        by_id = {job_id: outcome for result in results for job_id, outcome in result.items()}
        return [by_id.get(job.id) for job in jobs]

    def _decode(self, jobs: list[Job]) -> _Work:
        data = json.loads(jobs[0].payload)
        group = parse_group(Node("outbox", "group", data["group"]), source=f"{data['group']['id']}")
        alarms = [Alarm(**json.loads(j.payload)["alarm"]) for j in jobs]
        return _Work(group, group.targets[data["target"]], jobs, alarms)

    async def _deliver(self, work: _Work) -> dict[str, Outcome | None]:
        try:
            return await self._deliver_now(work)
        except asyncio.CancelledError:  # shutting down: hand the jobs back at once, not when the lease ends
            await asyncio.shield(self._settle(replace(j, due=time.time()) for j in work.jobs))
            raise
        except StoreError as exc:  # the lease runs out and the jobs come back
            metrics.STORE_ERRORS.inc()
            logger.warning("outbox: cannot record a delivery: %s", exc)
            return dict.fromkeys((j.id for j in work.jobs), None)

    async def _deliver_now(self, work: _Work) -> dict[str, Outcome | None]:
        if not await self._take_slots(work, 1):
            return dict.fromkeys((j.id for j in work.jobs), None)
        message, count = self._message(work)
        parts = len(split(message.body, budget(work.target, work.group)))
        if parts > 1 and not await self._take_slots(work, parts - 1):  # each part is a message upstream
            return dict.fromkeys((j.id for j in work.jobs), None)
        sent, rest = work.jobs[:count], work.jobs[count:]
        outcome = await self._dispatcher.send(work.target, work.group, message)
        now = time.time()
        settled = [self._next(j, outcome, now, work.target.channel) for j in sent]
        await self._settle([*settled, *(replace(j, due=now) for j in rest)])
        return {**{j.id: outcome for j in sent}, **dict.fromkeys((j.id for j in rest), None)}

    async def _take_slots(self, work: _Work, count: int) -> bool:
        """Take rate-limit slots for the target; if one is not free, put the jobs back until it is."""
        key = rate_key(work.target)
        if key is None:
            return True
        limit = self._settings.rate_limits[work.target.kind]
        for _ in range(count):
            wait = await self._store.acquire(key, limit.limit, limit.window)
            if wait > 0:
                metrics.RATE_LIMIT_WAITS.labels(channel=work.target.channel).inc()
                await self._settle(replace(j, due=time.time() + wait) for j in work.jobs)
                return False
        return True

    def _message(self, work: _Work) -> tuple[Message, int]:
        channel = work.target.channel
        if len(work.alarms) == 1:
            return self._renderer.message(work.alarms[0], work.group, channel)[0], 1
        return self._renderer.digest(work.alarms, work.group, channel, budget(work.target, work.group))

    def _next(self, job: Job, outcome: Outcome, now: float, channel: Channel) -> Job:
        """The job after an attempt: done, pending again after a backoff, or dead."""
        attempts = job.attempts + 1
        job = replace(job, attempts=attempts, detail=outcome.detail, updated=now, code=outcome.code)
        if outcome.ok:
            return replace(job, state=State.DONE)
        if outcome.retryable and now - job.created < self._settings.max_age:
            metrics.RETRIES.labels(channel=channel).inc()
            delay = min(self._settings.backoff_max, self._settings.backoff * 2 ** (attempts - 1))
            return replace(job, due=now + delay * random.uniform(0.5, 1.0))
        metrics.DEAD_LETTERS.labels(channel=channel).inc()
        logger.warning("outbox: job %s dead after %d attempts: %s", job.id, attempts, outcome.detail)
        return replace(job, state=State.DEAD)

    async def _settle(self, jobs: Iterable[Job]) -> None:
        await self._store.settle(list(jobs))
        self._wake.set()
