"""Native mutes: alarm-bridge holds back native alarms of one id, level, business and host for a while (a mute from
a digest's link may hold back any business or host: those its alarms did not share).

There is no Alertmanager behind a native alarm to silence it, so the gateway does it. The mutes live in the store
as one list under one key (written under a short lock, so two replicas adding at once keep both), and every
replica reads it again at most once a second: a mute holds across replicas.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bridge.model import Alarm
from bridge.store import Store, StoreError

KEY = "mutes"
LOCK = "mutes:lock"
CACHED = 1.0  # seconds a replica trusts what it read
LOCK_TTL = 5.0  # a lock whose holder died frees itself after this long


@dataclass(frozen=True)
class Mute:
    id: str
    group: tuple[str, str]  # the alarm's id and level
    business: str | None  # None: any
    host: str | None  # None: any (an empty host is one: the alarms that name none)
    until: float
    who: str
    at: float
    title: str

    def matches(self, alarm: Alarm, now: float) -> bool:
        return (
            now < self.until
            and (alarm.id, alarm.level) == self.group
            and self.business in (None, alarm.alert_business)
            and self.host in (None, alarm.alert_host)
        )

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["group"] = {"id": self.group[0], "level": self.group[1]}
        return data


def _load(text: str | None) -> list[Mute]:
    items = json.loads(text) if text else []
    return [Mute(**(m | {"group": tuple(m["group"])})) for m in items]


class Mutes:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: tuple[list[Mute], float] = ([], -CACHED)
        self._reading: asyncio.Future[None] | None = None

    async def active(self) -> list[Mute]:
        """The mutes in force, soonest to end first (read from the store at most once a second, by one caller
        while the others wait for what it reads: a burst of alarms makes one store call, not one each)."""
        if time.monotonic() - self._read[1] >= CACHED:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.ensure_future(self._reload())
            await asyncio.shield(self._reading)  # every caller wakes at once: alarms that came together stay so
        mutes, now = self._read[0], time.time()
        return sorted((m for m in mutes if m.until > now), key=lambda m: m.until)

    async def _reload(self) -> None:
        self._read = (_load(await self._store.get(KEY)), time.monotonic())

    async def find(self, alarm: Alarm) -> Mute | None:
        now = time.time()
        return next((m for m in await self.active() if m.matches(alarm, now)), None)

    async def add(
        self, group: tuple[str, str], business: str | None, host: str | None, seconds: float, who: str, title: str
    ) -> Mute:
        now = time.time()
        mute = Mute(secrets.token_hex(6), group, business, host, now + seconds, who, now, title)
        await self._change(lambda mutes: [*mutes, mute])
        return mute

    async def lift(self, id: str) -> Mute | None:
        """End a mute now; the mute, or None if there is no such mute in force."""
        found = next((m for m in await self._fresh() if m.id == id), None)
        if found is not None:
            await self._change(lambda mutes: [m for m in mutes if m.id != id])
        return found

    async def _fresh(self) -> list[Mute]:
        self._read = ([], -CACHED)
        return await self.active()

    async def _change(self, change: Callable[[list[Mute]], list[Mute]]) -> None:
        """Read, change and write the list under the lock; the expired mutes are dropped on the way."""
        for _ in range(50):
            if await self._store.put_new(LOCK, "1", LOCK_TTL):
                break
            await asyncio.sleep(0.05)
        else:
            raise StoreError("the mutes are locked by another replica; try again")
        try:
            now = time.time()
            mutes = [m for m in change(_load(await self._store.get(KEY))) if m.until > now]
            ttl = max((m.until - now for m in mutes), default=1.0)
            await self._store.put(KEY, json.dumps([asdict(m) for m in mutes], ensure_ascii=False), ttl)
            self._read = (mutes, time.monotonic())
        finally:
            await self._store.delete(LOCK)
