"""The path every alarm takes once it is valid: group lookup, the dedup window, delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge import metrics
from bridge.actions import keep, subject_of
from bridge.codes import Code
from bridge.config import Settings
from bridge.intake import jobs_for
from bridge.model import Alarm, Group, Mention, Outcome
from bridge.mutes import Mute, Mutes
from bridge.outbox import Outbox
from bridge.store import Admission, Late, State, Store, StoreError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    code: Code
    detail: str = ""


async def find_group(settings: Settings, store: Store, id: str, level: str) -> Group | None:
    """A provisioned group, else the store's (StoreError or TimeoutError if it does not answer in time)."""
    if (group := settings.provisioned.get((id, level))) is not None:
        return group
    async with asyncio.timeout(settings.store.timeout):
        return await store.get_group(id, level)


# What a 3000 says of the alarm: whether it may still be delivered.
NOT_WRITTEN = "the alarm was not accepted; send it again"
UNCONFIRMED = (
    "the store did not confirm the alarm; if it wrote it after all, it is delivered, and sending it again answers 1010"
)
MUTED = "muted by"  # how a muted alarm's deliveries are recorded: done, with this detail


class Gateway:
    def __init__(self, settings: Settings, store: Store, outbox: Outbox, mutes: Mutes | None = None) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.mutes = mutes or Mutes(store)  # one per process, kept across reloads: it caches what it read

    async def accept(
        self, alarm: Alarm, wait: float | None = None, stale: Sequence[str] = (), marks: Sequence[str] = ()
    ) -> Result:
        """Find the group, claim the dedup window and write the jobs; then wait for the first attempt.

        ``wait`` bounds that wait (default ``delivery.reply_wait``); 0 answers as soon as the jobs are written.
        ``stale`` and ``marks`` are the store's keys as ``Admission`` takes them, kept for the dedup window.
        """
        wait = self.settings.delivery.reply_wait if wait is None else wait
        deadline = time.time() + self.settings.store.timeout  # for every store call on the way to the reply, in all
        try:
            async with asyncio.timeout(self.settings.store.timeout):
                group = await find_group(self.settings, self.store, alarm.id, alarm.level)
                if group is None:
                    return Result(Code.NO_GROUP, f"id={alarm.id!r} level={alarm.level!r}")
                if "notice" in alarm.extra:  # what someone did from an action link: it tells the group, pages nobody
                    group = replace(group, mention=Mention.NONE)
                alarm = await self._with_actions(alarm)
                muted = alarm.source == "native" and "notice" not in alarm.extra
                mute = await self.mutes.find(alarm) if muted else None
        except (StoreError, TimeoutError) as exc:
            return _store_down(exc, NOT_WRITTEN)
        claim, window = self._claim(alarm, group)
        try:
            if mute is not None:
                return await self._muted(alarm, group, claim, window, mute, deadline)
            admitted = await self.outbox.admit(alarm, group, Admission((), claim, window, stale, marks), wait, deadline)
        except Late as exc:
            return _store_down(exc, NOT_WRITTEN)
        except (StoreError, TimeoutError) as exc:
            # The claim is written with the jobs or not at all: if a slow store wrote them after all, the claim
            # keeps the sender's retry from delivering the alarm twice; if it did not, there is no claim either.
            return _store_down(exc, UNCONFIRMED)
        if admitted is None:
            metrics.DEDUP_HITS.labels(source=alarm.source).inc()
            return Result(Code.DUPLICATE, f"{window:g}s")
        if not admitted.jobs:
            return Result(Code.OK, "the group has no channels")
        attempt = self.outbox.attempt(alarm, group, admitted)
        failed = [o for o in attempt.outcomes if not o.ok]
        notes = [f"{o.target}: {o.detail}{' (retrying)' if o.retryable else ''}" for o in failed]
        if attempt.waiting:
            notes.append(f"delivery continues for {attempt.waiting} of {len(admitted.jobs)} channels")
        return Result(first_failure(failed), "; ".join(notes + attempt.warnings))

    async def _with_actions(self, alarm: Alarm) -> Alarm:
        """The alarm marked for action links (see bridge.actions), its subject kept in the store as long as they
        are valid; as it is when actions are not configured or the alarm has none."""
        actions = self.settings.web.actions
        subject = subject_of(alarm) if actions is not None else None
        if actions is None or subject is None:
            return alarm
        expires = int(time.time() + actions.expires)
        await keep(self.store, subject, expires)  # within accept's store.timeout
        marker = {"subject": subject.id, "expires": expires, "labels": bool(subject.silences)}
        return replace(alarm, extra={**alarm.extra, "actions": marker})

    async def _muted(
        self, alarm: Alarm, group: Group, claim: str | None, window: float, mute: Mute, deadline: float
    ) -> Result:
        """A muted alarm past the dedup gate: recorded as delivered to nobody, saying which mute held it back."""
        jobs = jobs_for(alarm, group)
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mute.until))
        detail = f"{MUTED} {mute.who} until {until} (mute {mute.id}): not sent"
        async with asyncio.timeout(deadline - time.time()):
            (written,) = await self.store.admit(
                [Admission(jobs, claim, window)], self.settings.delivery.lease, before=deadline
            )
            if not written:
                return Result(Code.DUPLICATE, f"{window:g}s")
            now = time.time()
            await self.store.settle([replace(j, state=State.DONE, detail=detail, updated=now) for j in jobs])
        metrics.ALARMS_MUTED.inc()
        return Result(Code.OK, detail)

    async def renew(self, alarm: Alarm) -> None:
        """Start an accepted alarm's dedup window again, because its sender will send it again: Alertmanager
        retries a notification answered 5xx whole, for as long as it fails, the alarms already accepted included."""
        try:
            group = await find_group(self.settings, self.store, alarm.id, alarm.level)
            claim, window = self._claim(alarm, group) if group is not None else (None, 0.0)
            if claim is not None:
                async with asyncio.timeout(self.settings.store.timeout):
                    await self.store.put(claim, "1", window)
        except (StoreError, TimeoutError) as exc:  # the window ends as it would have: a later retry may repeat it
            logger.warning("store unavailable, a dedup window was not renewed: %s", exc or "timed out")

    def _claim(self, alarm: Alarm, group: Group) -> tuple[str | None, float]:
        """The alarm's dedup claim in the store (None when the group's window is 0) and the window."""
        window = self.settings.dedup_window if group.dedup_window is None else group.dedup_window
        if alarm.source == "alertmanager":  # an HA peer's copy is dropped whatever the group's window
            window = max(window, self.settings.alertmanager.dedup_window)
        return (f"dedup:{alarm.fingerprint()}" if window > 0 else None), window


def _store_down(exc: Exception, fate: str) -> Result:
    logger.warning("store unavailable: %s", exc or "timed out")
    metrics.STORE_ERRORS.inc()
    return Result(Code.STORE_DOWN, fate)


def first_failure(failed: Sequence[Outcome]) -> Code:
    """The reply code of the first failed channel in the order DingTalk, WeCom, email, Feishu (the order of codes),
    and within a channel of its first failed target in the group's order; OK when none failed."""
    if not failed:
        return Code.OK
    return Code(min(failed, key=lambda o: _CHANNEL_ORDER.get(o.code, 4)).code)


_CHANNEL_ORDER: dict[int, int] = {
    Code.DINGTALK_TOKEN: 0, Code.DINGTALK_CHAT: 0, Code.DINGTALK_SEND: 0,
    Code.WECOM_TOKEN: 1, Code.WECOM_SEND: 1,
    Code.EMAIL_SEND: 2,
    Code.FEISHU_TOKEN: 3, Code.FEISHU_SEND: 3,
}  # fmt: skip
