"""Durable delivery: an accepted alarm's jobs stay in the store until every target has the alarm.

The process that accepts an alarm makes the first attempt itself (the jobs are leased to it when they are
written); workers in every replica lease the jobs that are due: retries, jobs held back by a rate limit,
and jobs whose holder died (see bridge.lanes). Jobs due together for one target are merged into digest messages
(see bridge.digests); what becomes of each job is written back to the store (see bridge.ledger).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from bridge import metrics
from bridge.config import DeliverySettings
from bridge.digests import Composer
from bridge.dispatch import Dispatcher
from bridge.intake import Admitted, Intake, jobs_for
from bridge.lanes import Lanes, Results
from bridge.ledger import Ledger
from bridge.limits import Limits
from bridge.model import Alarm, Group, Outcome, label
from bridge.render import Renderer
from bridge.store import Admission, Job, State, Store, StoreError
from bridge.storm import Storms, stands_alone
from bridge.work import InForce, Work, attempted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """The first attempt at an alarm, as far as it got before the reply was due."""

    outcomes: list[Outcome]  # one per target that was tried
    waiting: int  # targets still in delivery: in flight at the bound, or held back by a rate limit
    warnings: list[str]


class Outbox:
    def __init__(
        self, store: Store, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings, store_timeout: float
    ) -> None:
        self._store_timeout = store_timeout
        self._in_force = InForce(dispatcher, renderer, settings)
        self._ledger = Ledger(store, store_timeout)
        self._limits = Limits(store, settings.rate_limits, settings.blocks)
        self._storms = Storms(store, self._limits, lambda: self._in_force)
        self._composer = Composer(store, self._ledger, self._limits, self._storms, lambda: self._in_force)
        self._lanes = Lanes(store, self._ledger, lambda: self._settings, self._deliver)
        self._intake = Intake(store, store_timeout, lambda: self._settings.lease, self._lanes.first_attempt)

    @property
    def _settings(self) -> DeliverySettings:
        return self._in_force.settings

    def reconfigure(self, dispatcher: Dispatcher, renderer: Renderer, settings: DeliverySettings) -> None:
        """A reloaded config: deliveries from now on use the new senders, templates and settings."""
        self._in_force = InForce(dispatcher, renderer, settings)
        self._limits.reconfigure(settings.rate_limits, settings.blocks)

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

    def attempt(self, alarm: Alarm, group: Group, admitted: Admitted) -> Attempt:
        """How far the first attempt at an admitted alarm got when its caller stopped waiting."""
        warnings = self._in_force.renderer.override_errors(alarm, group)
        if not admitted.attempt.done() or admitted.attempt.cancelled():  # cancelled: the gateway is stopping
            return Attempt([], len(admitted.jobs), warnings)
        results = admitted.attempt.result()
        outcomes = [o for o in (results.get(j.id) for j in admitted.jobs) if o is not None]
        return Attempt(outcomes, len(admitted.jobs) - len(outcomes), warnings)

    async def run(self) -> None:
        """The worker loop: lease due jobs and deliver them, and take the storms' turns, until ``stop``."""
        storms = asyncio.create_task(self._storms.run())
        try:
            await self._lanes.run()
        finally:
            storms.cancel()
            await asyncio.gather(storms, return_exceptions=True)

    async def stop(self) -> None:
        """See ``Lanes.stop``."""
        await self._lanes.stop()

    async def _deliver(self, work: Work) -> Results:
        """Messages for the work's jobs until each job is in one; the rest waits when a rate limit says so, or for
        its storm's next summary."""
        if (summaries := await self._composer.park(work)) is None:
            return await self._send_all(work)
        return dict.fromkeys((j.id for j in work.jobs), None) | await self._send_all(summaries)

    async def _send_all(self, work: Work) -> Results:
        results: Results = {}
        while work.jobs:
            if results and time.monotonic() + self._settings.deadline + self._store_timeout > work.leased_until:
                # The lease may end before another message is sent and recorded: hand the rest back now, or they
                # would come due again, be leased anew, and be sent twice. (The first message always goes.)
                await self._ledger.hand_back(work.jobs)
                return results | dict.fromkeys((j.id for j in work.jobs), None)
            try:
                sent = await self._deliver_one(work)
                if sent is not None:
                    outcome, count, settled = sent
                    results |= {j.id: outcome for j in work.jobs[:count]}
                    work = replace(work, jobs=work.jobs[count:], alarms=work.alarms[count:])
                    await asyncio.shield(self._ledger.record_sent(settled, work.leased_until))  # even at shutdown
            except asyncio.CancelledError:  # shutting down: hand the rest back at once, not when the lease ends
                await asyncio.shield(self._ledger.hand_back(work.jobs))
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
        sent = await self._composer.send(work)
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
            await self._ledger.mail_again(work.jobs[:count], outcome.later, self._settings.backoff)
        # One line per message, not per job: a refused digest would otherwise log its reason once per alarm.
        if dead := [j for j in settled if j.state is State.DEAD]:
            logger.warning(
                "outbox: %d job(s) for %s/%s %s dead, the first %s after %d attempts: %s",
                len(dead), work.group.id, work.group.level, label(work.target), dead[0].id, dead[0].attempts,
                outcome.detail,
            )  # fmt: skip
        return outcome, count, settled
