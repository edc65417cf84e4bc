"""Storms: when a target holds more alarms than its rate budget carries within the horizon, its alarms are no
longer sent one digest at a time, for hours, but accounted for in one summary an interval.

A storm lives in the store under its target's lane (the rate key), so every replica sees it. Its alarms' jobs are
parked (pending, no attempt); once an interval, one replica (the one that claims the turn) takes every parked job,
counts them, and in one store call settles them as summarized, writes the summary as a job of its own, and moves
the storm's state on. The summary is then delivered as any message is; a crash before that store call leaves the
jobs to the next turn, after it leaves the summary to the outbox: no alarm is counted twice or never.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from bridge import metrics
from bridge.config import StormSettings
from bridge.limits import Limits
from bridge.model import Group, Target, label
from bridge.render import budget
from bridge.schema import load_target
from bridge.store import Job, State, Store, StoreError
from bridge.tally import Storm, Tally, lasted, read, summary_job, with_ack_link
from bridge.upstreams import rate_key
from bridge.work import InForce

logger = logging.getLogger(__name__)

TICK = 1.0  # how often a replica looks whether a storm it knows of is due a turn
CACHED = 1.0  # how long a replica trusts what it read of a lane's storm
LINE_BYTES = 150  # what a digest line takes, about: for how many alarms a message carries before one was full
TAKEN = 5000  # jobs taken from the store at a time
ENDED_TTL = 5.0  # a storm's ended state is kept this long, then a new storm may start on the lane


def _key(lane: str) -> str:
    return f"storm:{lane}"


def _ack_key(lane: str, storm: str) -> str:
    return f"{_key(lane)}:ack:{storm}"


ACK_TTL = 7 * 86400.0  # an acknowledgement outlives any storm


async def _read(store: Store, lane: str) -> Storm | None:
    """The lane's storm as the store has it (an ended one too, until ENDED_TTL)."""
    value = await store.get(_key(lane))
    return Storm(**json.loads(value)) if value else None


async def acknowledge(store: Store, targets: Sequence[Target], who: str) -> list[str]:
    """The storms the targets are in send no more summaries (their alarms are still counted): the storms' ids."""
    found = []
    for lane in {lane for t in targets if (lane := rate_key(t))}:
        storm = await _read(store, lane)
        if storm is not None and not storm.ended:
            await store.put(_ack_key(lane, storm.id), who, ACK_TTL)
            found.append(storm.id)
    return found


def stands_alone(alarm_extra: Any) -> bool:
    """A storm's summary, or the notice of an action (bridge.web.act): sent as a message of its own, never parked
    for a summary nor taken by a storm's turn (a notice in a storm would only be counted in the next one)."""
    return isinstance(alarm_extra, dict) and ("summary" in alarm_extra or "notice" in alarm_extra)


class Storms:
    def __init__(
        self,
        store: Store,
        limits: Limits,
        in_force: Callable[[], InForce],
    ) -> None:
        self._store = store
        self._limits = limits
        self._in_force = in_force
        self._known: dict[str, tuple[Storm | None, float]] = {}  # lane -> what was read, and when
        self._checked: dict[str, float] = {}  # lane -> when its backlog was last counted
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def _settings(self) -> StormSettings | None:
        return self._in_force().settings.storm

    def _lease(self) -> float:
        return self._in_force().settings.lease

    def parked(self, targets: Sequence[Target], dues: list[float]) -> list[float]:
        """Per target of an alarm being admitted, its ``dues`` (see ``Limits.held_at_admission``), with those of
        targets known to be in a storm parked: written for the next summary, with no attempt of their own."""
        lanes = [rate_key(t) for t in targets]
        if self._settings is None or not any(self._active(lane) for lane in lanes if lane):
            return dues
        park = time.time() + self._park_for(self._settings)
        return [park if lane and self._active(lane) else (dues[i] if dues else 0.0) for i, lane in enumerate(lanes)]

    def _active(self, lane: str) -> bool:
        storm = self._known.get(lane, (None, 0.0))[0]
        return storm is not None and not storm.ended

    @staticmethod
    def _park_for(settings: StormSettings) -> float:
        """Parked jobs come due after this long: if no turn took them (every replica that knew the storm died, or
        it ended just then), a worker leases them and they are parked again, or delivered as usual."""
        return settings.quiet + settings.interval

    async def storm(self, target: Target) -> Storm | None:
        """The target's storm, if it is in one (read again at most once a second)."""
        lane = rate_key(target)
        if lane is None or self._settings is None:
            return None
        storm, read = self._known.get(lane, (None, 0.0))
        if time.monotonic() - read > CACHED:
            storm = await _read(self._store, lane)
            self._known[lane] = (storm, time.monotonic())
        return storm if storm is not None and not storm.ended else None

    def park(self, jobs: Sequence[Job]) -> list[Job]:
        """The jobs, parked for the next summary."""
        assert self._settings is not None
        due = time.time() + self._park_for(self._settings)
        return [replace(j, due=due) for j in jobs]

    def watch(self, group: Group, target: Target, payload: str) -> None:
        """A rate limit holds the target back: see whether its backlog makes a storm, in the background, at most
        once a second per lane and replica."""
        lane = rate_key(target)
        if lane is None or self._settings is None or time.monotonic() - self._checked.get(lane, 0.0) < 1.0:
            return
        self._checked[lane] = time.monotonic()
        task = asyncio.create_task(self._check(lane, group, target, payload))
        self._checks.add(task)
        task.add_done_callback(self._checked_one)

    def _checked_one(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            metrics.STORE_ERRORS.inc()
            logger.warning("storm: cannot count the backlog: %s", error)

    async def _check(self, lane: str, group: Group, target: Target, payload: str) -> None:
        """If the target's backlog is more than the budget carries within the horizon, it enters a storm."""
        settings = self._settings
        if settings is None:
            return
        held = await self._store.held(lane)
        capacity = self._limits.capacity(
            target, max(1, budget(target, group) // LINE_BYTES), settings.horizon, settings.reserve
        )
        if held <= capacity or await self.storm(target) is not None:
            return
        now = time.time()
        storm = Storm(uuid.uuid4().hex[:12], now, now, 0, 0, now, payload)
        if await self._store.put_new(_key(lane), json.dumps(asdict(storm)), self._ttl(settings)):
            self._known[lane] = (storm, time.monotonic())
            metrics.STORMS_STARTED.labels(channel=target.channel, target=label(target)).inc()
            logger.warning("storm %s: %s of group %s/%s enters summary mode: %d alarms held, its budget carries %d "
                           "within %gs", storm.id, label(target), group.id, group.level, held, capacity,
                           settings.horizon)  # fmt: skip

    def _ttl(self, settings: StormSettings) -> float:
        """A storm's state outlives its turns by this much: if every replica dies, it ends by itself."""
        return settings.quiet + settings.interval + self._lease()

    async def run(self) -> None:
        """Turns for the storms this replica knows of, when they are due, until cancelled."""
        while True:
            await asyncio.sleep(TICK)
            for lane in [lane for lane in self._known if self._active(lane)]:
                try:
                    await self._turn(lane)
                except StoreError as exc:
                    metrics.STORE_ERRORS.inc()
                    logger.warning("storm: cannot take a turn for %s: %s", lane, exc)
                except Exception:  # a bug: the other storms, and the next turn, go on
                    logger.exception("storm: a turn for %s failed", lane)

    async def _turn(self, lane: str) -> None:
        settings = self._settings
        if settings is None:
            return
        storm = await _read(self._store, lane)
        self._known[lane] = (storm, time.monotonic())
        if storm is None or storm.ended or time.time() < storm.next:
            return
        if not await self._store.put_new(f"{_key(lane)}:turn:{storm.id}:{storm.sent + 1}", "1", self._lease()):
            return  # another replica has this turn
        taken: list[Job] = []
        tally = Tally(settings.examples)
        payload = ""
        while len(taken) < settings.gather:  # a chunk at a time: a storm's payloads are not all held at once
            chunk = await self._store.take(lane, min(TAKEN, settings.gather - len(taken)), self._lease())
            first = await read(chunk, tally)  # every chunk read: not short-circuited once a payload is known
            payload = payload or first
            taken += [replace(j, payload="") for j in chunk]  # a settle writes no payload
            if len(chunk) < TAKEN:
                break
        now = time.time()
        if not taken and (now - storm.last < settings.quiet or await self._unsent(storm)):
            moved = replace(storm, next=min(now + settings.interval, storm.last + settings.quiet))
            await self._store.put(_key(lane), json.dumps(asdict(moved)), self._ttl(settings))
            return
        ending = not taken
        number = storm.sent + 1
        newest = max((j.created for j in taken), default=storm.last)
        oldest = min((j.created for j in taken), default=storm.started)
        after = replace(
            storm,
            started=min(storm.started, oldest),
            last=newest,
            total=storm.total + len(taken),
            sent=number,
            next=now + settings.interval,
            ended=ending,
        )
        still = await self._store.held(lane) - len(taken)  # the taken are pending until summarize settles them
        summary = summary_job(after, settings, payload or storm.base, tally, still)
        summary = await with_ack_link(self._store, self._in_force().renderer.actions, after, summary)  # its ack link
        detail = f"summarized in storm {storm.id} message {number}"
        acknowledged = await self._store.get(_ack_key(lane, storm.id))
        if acknowledged is not None:  # counted as usual, and no message: someone is on it
            detail += f"; not sent: the storm was acknowledged by {acknowledged}"
        absorbed = [replace(j, state=State.DONE, attempts=j.attempts + 1, detail=detail, updated=now) for j in taken]
        ttl = ENDED_TTL if ending else self._ttl(settings)
        if acknowledged is None:
            await self._store.summarize(absorbed, summary, _key(lane), json.dumps(asdict(after)), ttl)
        else:
            await self._store.settle(absorbed)
            await self._store.put(_key(lane), json.dumps(asdict(after)), ttl)
        self._known[lane] = (after, time.monotonic())
        data = json.loads(summary.payload)
        target = load_target(data["group"]["channels"][data["target"]])
        metrics.ALARMS_SUMMARIZED.labels(channel=target.channel, target=label(target)).inc(len(taken))
        if ending:
            metrics.STORMS_ENDED.labels(channel=target.channel, target=label(target)).inc()
            logger.warning("storm %s: %s leaves summary mode: %d alarms in %s", storm.id, label(target), after.total,
                           lasted(after.last - after.started))  # fmt: skip

    async def _unsent(self, storm: Storm) -> bool:
        """Whether the storm's last summary is still waiting: its closing message would overtake it."""
        last = await self._store.job(f"storm:{storm.id}:{storm.sent}") if storm.sent else None
        return last is not None and last.state is State.PENDING
