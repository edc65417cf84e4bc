"""Durable delivery: an accepted alarm's jobs stay in the store until every target has the alarm.

The process that accepts an alarm makes the first attempt itself (the jobs are leased to it when they are
written); workers in every replica lease the jobs that are due: retries, jobs held back by a rate limit,
and jobs whose holder died. Jobs due together for one target are merged into digest messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from bridge import metrics
from bridge.actions import digest_subject, keep
from bridge.config import DeliverySettings
from bridge.dispatch import SEND_CODES, Dispatcher
from bridge.intake import Admitted, Entry, FirstAttempt, Intake, jobs_for
from bridge.limits import Limits
from bridge.model import Alarm, Group, Message, Outcome, Reason, label
from bridge.render import Renderer, RenderError, budget
from bridge.store import Admission, Job, State, Store, StoreError
from bridge.storm import Storms, stands_alone
from bridge.work import Work, attempted, mailed_again, progress, read_leased, resumed, unread

logger = logging.getLogger(__name__)

T = TypeVar("T")
PARALLEL = 16  # leased batches in flight per process
Lane = tuple[int, int]  # a target of a group object: id(group), index


@dataclass(frozen=True)
class Attempt:
    """The first attempt at an alarm, as far as it got before the reply was due."""

    outcomes: list[Outcome]  # one per target that was tried
    waiting: int  # targets still in delivery: in flight at the bound, or held back by a rate limit
    warnings: list[str]


def _merged(results: Iterable[dict[str, Outcome | None]]) -> dict[str, Outcome | None]:
    return {job_id: outcome for result in results for job_id, outcome in result.items()}


class Outbox:
    def __init__(
        self, store: Store, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings, store_timeout: float
    ) -> None:
        self._store = store
        self._store_timeout = store_timeout
        self._intake = Intake(store, store_timeout, lambda: self._settings.lease, self._first_attempt)
        self._limits = Limits(store, settings.rate_limits, settings.blocks)
        self._storms = Storms(
            store, self._limits, settings.storm, lambda: self._settings.lease, lambda: self._renderer.actions
        )
        self._lanes: dict[Lane, list[tuple[Work, asyncio.Future[dict[str, Outcome | None]]]]] = {}
        self._dispatcher = dispatcher
        self._renderer = renderer
        self._settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def reconfigure(self, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings) -> None:
        """A reloaded config: deliveries from now on use the new senders, templates and settings."""
        self._dispatcher, self._renderer, self._settings = dispatcher, renderer, settings
        self._limits.reconfigure(settings.rate_limits, settings.blocks)
        self._storms.reconfigure(settings.storm)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def admit(
        self, alarm: Alarm, group: Group, admission: Admission, wait: float, deadline: float
    ) -> Admitted | None:
        """See ``Intake.admit`` (``admission`` without its jobs, made here): the jobs are written, and their first
        attempts made, together with the alarms that arrive beside it (one message per target, a digest where
        several alarms share it); a job for a target known to be held by a rate limit skips that attempt (see
        ``Limits.held_at_admission``), and is parked for the next summary if the target is in a storm (see
        ``Storms.parked``)."""
        held = self._limits.held_at_admission(group.targets)
        jobs = jobs_for(alarm, group, held if stands_alone(alarm.extra) else self._storms.parked(group.targets, held))
        for target, due, job in zip(group.targets, held, jobs, strict=False):
            if due:  # the target's backlog grows: does it make a storm?
                self._storms.watch(group, target, job.payload)
        return await self._intake.admit(alarm, group, replace(admission, jobs=jobs), wait, deadline)

    def _first_attempt(self, entries: list[Entry], leased_until: float) -> FirstAttempt:
        works: dict[Lane, Work] = {}
        for entry in entries:
            for i, (job, target) in enumerate(zip(entry.admission.jobs, entry.group.targets, strict=True)):
                if job.due:  # held back by a rate limit: written due later
                    continue
                work = works.setdefault((id(entry.group), i), Work(entry.group, target, [], [], leased_until))
                work.jobs.append(job)
                work.alarms.append(entry.alarm)
        return self._spawn(self._deliver_in_lanes(works))

    async def _deliver_in_lanes(self, works: dict[Lane, Work]) -> dict[str, Outcome | None]:
        return _merged(await asyncio.gather(*(self._queue_in_lane(lane, work) for lane, work in works.items())))

    def _queue_in_lane(self, lane: Lane, work: Work) -> asyncio.Future[dict[str, Outcome | None]]:
        """First attempts go one delivery at a time per target: what arrives meanwhile is merged into the next."""
        future: asyncio.Future[dict[str, Outcome | None]] = asyncio.get_running_loop().create_future()
        if lane not in self._lanes:
            self._lanes[lane] = []
            self._spawn(self._run_lane(lane))
        self._lanes[lane].append((work, future))
        return future

    async def _run_lane(self, lane: Lane) -> None:
        queued: list[tuple[Work, asyncio.Future[dict[str, Outcome | None]]]] = []
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
                await asyncio.shield(self._hand_back(j for w, _ in waiting for j in w.jobs))

    def attempt(self, alarm: Alarm, group: Group, admitted: Admitted) -> Attempt:
        """How far the first attempt at an admitted alarm got when its caller stopped waiting."""
        warnings = self._renderer.override_errors(alarm, group)
        if not admitted.attempt.done() or admitted.attempt.cancelled():  # cancelled: the gateway is stopping
            return Attempt([], len(admitted.jobs), warnings)
        results = admitted.attempt.result()
        outcomes = [o for o in (results.get(j.id) for j in admitted.jobs) if o is not None]
        return Attempt(outcomes, len(admitted.jobs) - len(outcomes), warnings)

    async def run(self) -> None:
        """The worker loop: lease due jobs and deliver them, and take the storms' turns, until ``stop``."""
        storms = asyncio.create_task(self._storms.run())
        try:
            await self._lease_and_deliver()
        finally:
            storms.cancel()
            await asyncio.gather(storms, return_exceptions=True)

    async def _lease_and_deliver(self) -> None:
        while not self._stopping:
            if len(self._tasks) >= PARALLEL:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            lease, started = self._settings.lease, time.monotonic()
            try:
                jobs = await self._store.lease(self._settings.batch, lease=lease)
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

    async def _process(self, jobs: Sequence[Job], leased_until: float) -> dict[str, Outcome | None]:
        """Deliver jobs, merged per target; an outcome per job id (None where it is still waiting)."""
        works, unreadable = read_leased(jobs, leased_until)
        if unreadable:
            await self._bury(unreadable)
        return _merged(await asyncio.gather(*(self._deliver(w) for w in works)))

    async def _bury(self, unreadable: list[tuple[Job, Exception]]) -> None:
        """Jobs whose payload cannot be read (a bug, or damage): dead, saying why, so that they hold back none of
        the jobs leased with them and stay listed, to be retried once whatever is wrong is put right."""
        (first, error), now = unreadable[0], time.time()
        logger.error("outbox: %d job(s) cannot be read and are dead, the first %s: %s: %s",
                     len(unreadable), first.id, type(error).__name__, error)  # fmt: skip
        await self._record(unread(unreadable, now))

    async def _deliver(self, work: Work) -> dict[str, Outcome | None]:
        """Messages for the work's jobs until each job is in one; the rest waits when a rate limit says so, or for
        its storm's next summary."""
        if not await self._parked(work):
            return await self._send_all(work)
        kept = [(j, a) for j, a in zip(work.jobs, work.alarms, strict=True) if stands_alone(a.extra)]
        waiting = dict.fromkeys((j.id for j in work.jobs), None)
        return waiting | await self._send_all(replace(work, jobs=[j for j, _ in kept], alarms=[a for _, a in kept]))

    async def _send_all(self, work: Work) -> dict[str, Outcome | None]:
        results: dict[str, Outcome | None] = {}
        while work.jobs:
            if results and time.monotonic() + self._settings.deadline + self._store_timeout > work.leased_until:
                # The lease may end before another message is sent and recorded: hand the rest back now, or they
                # would come due again, be leased anew, and be sent twice. (The first message always goes.)
                await self._hand_back(work.jobs)
                return results | dict.fromkeys((j.id for j in work.jobs), None)
            try:
                sent = await self._deliver_one(work)
                if sent is not None:
                    outcome, count, settled = sent
                    results |= {j.id: outcome for j in work.jobs[:count]}
                    work = replace(work, jobs=work.jobs[count:], alarms=work.alarms[count:])
                    await asyncio.shield(self._record_sent(settled, work.leased_until))  # even when shutting down
            except asyncio.CancelledError:  # shutting down: hand the rest back at once, not when the lease ends
                await asyncio.shield(self._hand_back(work.jobs))
                raise
            except StoreError as exc:  # the lease runs out and the jobs come back
                metrics.STORE_ERRORS.inc()
                logger.warning("outbox: cannot record a delivery: %s", exc)
                sent = None
            if sent is None:
                return results | dict.fromkeys((j.id for j in work.jobs), None)
        return results

    async def _deliver_one(self, work: Work) -> tuple[Outcome, int, list[Job]] | None:
        """Send one message for the leading jobs: its outcome, how many jobs it carried, and those jobs as they are
        to be recorded.

        When the message fails, the jobs not yet sent share its outcome (and its retry), as the upstream refuses.
        None if a rate limit holds the jobs back (they are put back until a slot is free).
        """
        if not await self._take_slots(work, 1):
            return None
        sent = await self._send(work)
        if sent is None:
            return None
        outcome, carried, reached = sent
        count = carried if outcome.ok else len(work.jobs)
        if not outcome.ok and (block := self._limits.blocked(work.target, outcome)):
            logger.warning("outbox: %s of group %s/%s is blocked by the upstream for %gs (%s); its messages wait",
                           label(work.target), work.group.id, work.group.level, block, outcome.detail)  # fmt: skip
        now = time.time()
        settled = [
            attempted(j, outcome, now, self._settings, work.target.channel, reached if i < carried else j.progress)
            for i, j in enumerate(work.jobs[:count])
        ]
        if outcome.later:  # before the jobs are recorded as done: a crash in between repeats a mail, loses none
            await self._mail_again(work.jobs[:count], outcome.later)
        # One line per message, not per job: a refused digest would otherwise log its reason once per alarm.
        if dead := [j for j in settled if j.state is State.DEAD]:
            logger.warning(
                "outbox: %d job(s) for %s/%s %s dead, the first %s after %d attempts: %s",
                len(dead), work.group.id, work.group.level, label(work.target), dead[0].id, dead[0].attempts,
                outcome.detail,
            )  # fmt: skip
        return outcome, count, settled

    async def _send(self, work: Work) -> tuple[Outcome, int, str] | None:
        """The message for the leading jobs, sent: its outcome, how many jobs it carries, and the progress they
        record (see ``progress``); None if a rate limit holds back the further parts of a split message."""
        try:
            message, count = await self._message(work)
        except RenderError as exc:  # no retry helps until the template is fixed; then the dead jobs can be retried
            logger.error("outbox: %s", exc)
            code = SEND_CODES[work.target.channel]
            return Outcome(label(work.target), False, code, False, Reason.CONFIG, str(exc)), 0, ""  # none made
        parts = self._dispatcher.parts(work.target, work.group, message)
        if count == 1:
            message = resumed(message, work.jobs[0].progress, parts)
        if parts - message.skip > 1 and not await self._take_slots(work, parts - message.skip - 1):
            return None  # each part is a message upstream
        outcome = await self._dispatcher.send(work.target, work.group, message)
        return outcome, count, progress(message, outcome, parts) if count == 1 else ""

    async def _parked(self, work: Work) -> bool:
        """If the work's target is in a storm, its alarms (not the summaries) are parked for the next summary."""
        try:
            if await self._storms.storm(work.target) is None:
                return False
        except StoreError:  # delivered as usual: a storm is what the store says, and it cannot say now
            return False
        parked = [j for j, a in zip(work.jobs, work.alarms, strict=True) if not stands_alone(a.extra)]
        await self._settle(self._storms.park(parked))
        return True

    async def _take_slots(self, work: Work, count: int) -> bool:
        """Take rate-limit slots for the target (ordinary messages leave a storm summary's reserve); if one is not
        free, put the jobs back until it is, and see whether the target's backlog makes a storm."""
        summary = stands_alone(work.alarms[0].extra)
        reserve = 0 if summary or self._settings.storm is None else self._settings.storm.reserve
        held = await self._limits.take(work.target, count, reserve)
        if held is not None:
            await self._settle(self._limits.hold(work.target, work.jobs, *held))
            if not summary:
                self._storms.watch(work.group, work.target, work.jobs[0].payload)
        return held is None

    async def _mail_again(self, jobs: Sequence[Job], recipients: Sequence[str]) -> None:
        """New jobs for the recipients that an email server refused for now (a 4xx: greylisting, a full mailbox)
        while it took the others: the same mails, to those addresses alone, retried as any job is after a backoff,
        so that the others do not get them twice."""
        again = [mailed_again(job, recipients) for job in jobs]
        # Leased to nobody for a backoff: then due, and the worker sends them.
        await self._store.admit([Admission(again)], lease=self._settings.backoff)

    async def _message(self, work: Work) -> tuple[Message, int]:
        group, channel = work.group, work.target.channel
        # A job whose message was delivered in part goes alone: its retry is that message, from the part it failed at.
        # So does a storm's summary.
        pairs = enumerate(zip(work.jobs, work.alarms, strict=True))
        alone = next((i for i, (job, alarm) in pairs if job.progress or stands_alone(alarm.extra)), len(work.jobs))
        if alone <= 1:
            return self._renderer.message(work.alarms[0], group, channel)[0], 1
        message, count = self._renderer.digest(work.alarms[:alone], group, channel, budget(work.target, group))
        if count < alone:
            self._limits.packed(work.target, count)
        if self._renderer.actions and (found := digest_subject(work.alarms[:count])):
            await keep(self._store, *found)  # what the digest's links act on
        return message, count

    async def _hand_back(self, jobs: Iterable[Job]) -> None:
        """Leased jobs this process will not deliver after all: due again at once, not when their lease ends."""
        await self._record(replace(j, due=time.time()) for j in jobs)

    async def _record(self, jobs: Iterable[Job]) -> None:
        """Settle jobs that no caller waits on: if the store fails, their lease runs out and they come back."""
        try:
            await self._settle(jobs)
        except StoreError as exc:
            metrics.STORE_ERRORS.inc()
            logger.warning("outbox: cannot record a delivery: %s", exc)

    async def _record_sent(self, jobs: list[Job], leased_until: float) -> None:
        """Settle jobs whose message went out, again and again while the store fails (a Redis failover takes
        seconds) and the lease holds: a delivery not recorded comes due again when its lease ends, and goes out
        twice."""
        while True:
            try:
                return await self._settle(jobs)
            except StoreError:
                if time.monotonic() + 2 * self._store_timeout > leased_until:
                    raise
                await asyncio.sleep(self._store_timeout / 4)

    async def _settle(self, jobs: Iterable[Job]) -> None:
        # No wake-up of the worker: a job settled pending is due later (a backoff, a rate limit), and the worker
        # finds it at a poll; woken now, it would only lease nothing.
        await self._store.settle(list(jobs))
