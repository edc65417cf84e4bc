"""What the outbox writes back to the store for the jobs it leased: settled, handed back, buried, or mailed again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from bridge import metrics
from bridge.store import Admission, Job, Store, StoreError
from bridge.work import mailed_again, unread

logger = logging.getLogger(__name__)


class Ledger:
    def __init__(self, store: Store, store_timeout: float) -> None:
        self._store = store
        self._store_timeout = store_timeout

    async def settle(self, jobs: Iterable[Job]) -> None:
        # No wake-up of the worker: a job settled pending is due later (a backoff, a rate limit), and the worker
        # finds it at a poll; woken now, it would only lease nothing.
        await self._store.settle(list(jobs))

    async def record(self, jobs: Iterable[Job]) -> None:
        """Settle jobs that no caller waits on: if the store fails, their lease runs out and they come back."""
        try:
            await self.settle(jobs)
        except StoreError as exc:
            metrics.STORE_ERRORS.inc()
            logger.warning("outbox: cannot record a delivery: %s", exc)

    async def record_sent(self, jobs: list[Job], leased_until: float) -> None:
        """Settle jobs whose message went out, again and again while the store fails (a Redis failover takes
        seconds) and the lease holds: a delivery not recorded comes due again when its lease ends, and goes out
        twice."""
        while True:
            try:
                return await self.settle(jobs)
            except StoreError:
                if time.monotonic() + 2 * self._store_timeout > leased_until:
                    raise
                await asyncio.sleep(self._store_timeout / 4)

    async def hand_back(self, jobs: Iterable[Job]) -> None:
        """Leased jobs this process will not deliver after all: due again at once, not when their lease ends."""
        await self.record(replace(j, due=time.time()) for j in jobs)

    async def bury(self, unreadable: list[tuple[Job, Exception]]) -> None:
        """Jobs whose payload cannot be read (a bug, or damage): dead, saying why, so that they hold back none of
        the jobs leased with them and stay listed, to be retried once whatever is wrong is put right."""
        (first, error), now = unreadable[0], time.time()
        logger.error("outbox: %d job(s) cannot be read and are dead, the first %s: %s: %s",
                     len(unreadable), first.id, type(error).__name__, error)  # fmt: skip
        await self.record(unread(unreadable, now))

    async def mail_again(self, jobs: Sequence[Job], recipients: Sequence[str], backoff: float) -> None:
        """New jobs for the recipients that an email server refused for now (a 4xx: greylisting, a full mailbox)
        while it took the others: the same mails, to those addresses alone, retried as any job is after a backoff,
        so that the others do not get them twice."""
        again = [mailed_again(job, recipients) for job in jobs]
        # Leased to nobody for a backoff: then due, and the worker sends them.
        await self._store.admit([Admission(again)], lease=backoff)
