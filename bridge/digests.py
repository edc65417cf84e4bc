"""The message for a work's leading jobs: parked instead while their target is in a storm, held back while a rate
limit has no slot for it, merged into a digest where several alarms share the target, then sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from bridge.actions import digest_subject, keep
from bridge.dispatch import SEND_CODES
from bridge.ledger import Ledger
from bridge.limits import Limits
from bridge.model import Message, Outcome, Reason, label
from bridge.render import RenderError, budget
from bridge.store import Store, StoreError
from bridge.storm import Storms, stands_alone
from bridge.work import InForce, Work, progress, resumed

logger = logging.getLogger(__name__)


class Composer:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        limits: Limits,
        storms: Storms,
        in_force: Callable[[], InForce],
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._limits = limits
        self._storms = storms
        self._in_force = in_force

    async def park(self, work: Work) -> Work | None:
        """If the work's target is in a storm, its alarms are parked for the next summary and what goes now (the
        summaries) is returned; None outside a storm."""
        try:
            if await self._storms.storm(work.target) is None:
                return None
        except StoreError:  # delivered as usual: a storm is what the store says, and it cannot say now
            return None
        pairs = list(zip(work.jobs, work.alarms, strict=True))
        await self._ledger.record(self._storms.park([j for j, a in pairs if not stands_alone(a.extra)]))
        kept = [(j, a) for j, a in pairs if stands_alone(a.extra)]
        return replace(work, jobs=[j for j, _ in kept], alarms=[a for _, a in kept])

    async def send(self, work: Work) -> tuple[Outcome, int, str] | None:
        """The message for the leading jobs, sent: its outcome, how many jobs it carries, and the progress they
        record (see ``progress``); None if a rate limit holds the jobs back (they are put back until a slot is
        free)."""
        if not await self._take_slots(work, 1):
            return None
        try:
            message, count = await self._message(work)
        except RenderError as exc:  # no retry helps until the template is fixed; then the dead jobs can be retried
            logger.error("outbox: %s", exc)
            code = SEND_CODES[work.target.channel]
            return Outcome(label(work.target), False, code, False, Reason.CONFIG, str(exc)), 0, ""  # none made
        dispatcher = self._in_force().dispatcher
        parts = dispatcher.parts(work.target, work.group, message)
        if count == 1:
            message = resumed(message, work.jobs[0].progress, parts)
        if parts - message.skip > 1 and not await self._take_slots(work, parts - message.skip - 1):
            return None  # each part is a message upstream
        outcome = await dispatcher.send(work.target, work.group, message)
        return outcome, count, progress(message, outcome, parts) if count == 1 else ""

    async def _take_slots(self, work: Work, count: int) -> bool:
        """Take rate-limit slots for the target (ordinary messages leave a storm summary's reserve); if one is not
        free, put the jobs back until it is, and see whether the target's backlog makes a storm."""
        summary = stands_alone(work.alarms[0].extra)
        storm = self._in_force().settings.storm
        reserve = 0 if summary or storm is None else storm.reserve
        held = await self._limits.take(work.target, count, reserve)
        if held is not None:
            await self._ledger.settle(self._limits.hold(work.target, work.jobs, *held))
            if not summary:
                self._storms.watch(work.group, work.target, work.jobs[0].payload)
        return held is None

    async def _message(self, work: Work) -> tuple[Message, int]:
        group, channel, renderer = work.group, work.target.channel, self._in_force().renderer
        # A job whose message was delivered in part goes alone: its retry is that message, from the part it failed at.
        # So does a storm's summary.
        pairs = enumerate(zip(work.jobs, work.alarms, strict=True))
        alone = next((i for i, (job, alarm) in pairs if job.progress or stands_alone(alarm.extra)), len(work.jobs))
        if alone <= 1:
            return renderer.message(work.alarms[0], group, channel)[0], 1
        message, count = renderer.digest(work.alarms[:alone], group, channel, budget(work.target, group))
        if count < alone:
            self._limits.packed(work.target, count)
        if renderer.actions and (found := digest_subject(work.alarms[:count])):
            await keep(self._store, *found)  # what the digest's links act on
        return message, count
