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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bridge import metrics
from bridge.actions import ActionSettings, Subject, keep
from bridge.config import StormSettings
from bridge.limits import Limits
from bridge.model import Group, Mention, Target, label
from bridge.render import budget
from bridge.schema import load_target
from bridge.store import Job, State, Store, StoreError
from bridge.upstreams import rate_key

logger = logging.getLogger(__name__)

TICK = 1.0  # how often a replica looks whether a storm it knows of is due a turn
CACHED = 1.0  # how long a replica trusts what it read of a lane's storm
LINE_BYTES = 150  # what a digest line takes, about: for how many alarms a message carries before one was full
TAKEN = 5000  # jobs taken from the store at a time
SLIM = ("alert_level", "alert_business", "alert_host", "alert_ip", "alert_time", "alert_function", "exception_spec",
        "source")  # fmt: skip  # what a summary reads of each alarm
ENDED_TTL = 5.0  # a storm's ended state is kept this long, then a new storm may start on the lane


@dataclass(frozen=True)
class Storm:
    """A storm's state, as stored under ``storm:LANE``."""

    id: str
    started: float
    last: float  # the newest alarm summarized
    total: int  # alarms summarized so far
    sent: int  # summaries written so far
    next: float  # when the next turn is due
    base: str  # a parked job's payload: its target and group, for the closing message when no alarm is left
    ended: bool = False


def _key(lane: str) -> str:
    return f"storm:{lane}"


def _ack_key(lane: str, storm: str) -> str:
    return f"{_key(lane)}:ack:{storm}"


ACK_TTL = 7 * 86400.0  # an acknowledgement outlives any storm


async def acknowledge(store: Store, targets: Sequence[Target], who: str) -> list[str]:
    """The storms the targets are in send no more summaries (their alarms are still counted): the storms' ids."""
    found = []
    for lane in {lane for t in targets if (lane := rate_key(t))}:
        value = await store.get(_key(lane))
        storm = Storm(**json.loads(value)) if value else None
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
        settings: StormSettings | None,
        lease: Callable[[], float],
        actions: Callable[[], ActionSettings | None] = lambda: None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._settings = settings
        self._lease = lease
        self._actions = actions  # the action links in force: a summary carries one that acknowledges the storm
        self._known: dict[str, tuple[Storm | None, float]] = {}  # lane -> what was read, and when
        self._checked: dict[str, float] = {}  # lane -> when its backlog was last counted
        self._checks: set[asyncio.Task[None]] = set()

    def reconfigure(self, settings: StormSettings | None) -> None:
        self._settings = settings

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
            value = await self._store.get(_key(lane))
            storm = Storm(**json.loads(value)) if value else None
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
        value = await self._store.get(_key(lane))
        storm = Storm(**json.loads(value)) if value else None
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
            first = await _read(chunk, tally)  # every chunk read: not short-circuited once a payload is known
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
        summary = await self._with_ack_link(after, self._summary(after, settings, payload or storm.base, tally, still))
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
                           _lasted(after.last - after.started))  # fmt: skip

    async def _unsent(self, storm: Storm) -> bool:
        """Whether the storm's last summary is still waiting: its closing message would overtake it."""
        last = await self._store.job(f"storm:{storm.id}:{storm.sent}") if storm.sent else None
        return last is not None and last.state is State.PENDING

    async def _with_ack_link(self, storm: Storm, summary: Job) -> Job:
        """The summary with a link that acknowledges the storm (the storm is its subject: see bridge.actions), when
        action links are on and the storm goes on."""
        actions = self._actions()
        if actions is None or storm.ended:
            return summary
        data = json.loads(summary.payload)
        alarm = data["alarm"]
        group = (str(alarm["id"]), str(alarm["level"]))
        subject = Subject(f"storm{storm.id}", group, str(alarm["source"]), str(alarm["alert_business"]), "",
                          str(alarm["alert_level"]), f"【告警风暴】storm {storm.id} of {'/'.join(group)}",
                          str(alarm["dep"]), str(alarm["env"]))  # fmt: skip
        expires = int(time.time() + actions.expires)
        await keep(self._store, subject, expires)
        alarm["extra"]["actions"] = {"subject": subject.id, "expires": expires, "labels": False, "only": "ack"}
        return replace(summary, payload=json.dumps(data, ensure_ascii=False))

    def _summary(self, storm: Storm, settings: StormSettings, payload: str, tally: Tally, held: int) -> Job:
        """The summary's job: the group and target of the storm's jobs, and a summary alarm in place of theirs."""
        data = json.loads(payload)
        if storm.sent > 1:  # only the first summary of a storm mentions the members
            data["group"]["mention"] = Mention.NONE.value
        data["alarm"] = summary_alarm(storm, settings, data["alarm"], tally, held)
        now = time.time()
        return Job(f"storm:{storm.id}:{storm.sent}", json.dumps(data, ensure_ascii=False), now, due=now)


def summary_alarm(
    storm: Storm, settings: StormSettings, first: dict[str, Any], tally: Tally, held: int
) -> dict[str, Any]:
    """A summary as an alarm's fields (those of the storm's ``first`` alarm, for its group and source), the counts
    of the tally in its ``extra``, for the templates (see templates/native/summary.j2)."""
    summary = tally.breakdown(settings.top) | {
        "storm": storm.id,
        "number": storm.sent,
        "kind": "end" if storm.ended else ("start" if storm.sent == 1 else "update"),
        "new": tally.count,
        "total": storm.total,
        "still_held": held,
        "first_time": tally.first_time,
        "last_time": tally.last_time,
        "lasted": _lasted(storm.last - storm.started),
        "examples": tally.shown,
        "link": f"{settings.external_url}/ui/alarms?storm={storm.id}" if settings.external_url else "",
    }
    levels = [lvl for lvl, _ in summary["levels"]]
    return {
        "id": first["id"], "level": first["level"], "dep": first.get("dep", ""), "env": first.get("env", ""),
        "alert_level": next((lvl for lvl in ("高", "中", "低") if lvl in levels), first.get("alert_level", "中")),
        "alert_time": time.strftime("%Y-%m-%d %H:%M:%S"), "alert_business": "告警风暴 / alarm storm",
        "source": tally.source or first.get("source", "native"), "extra": {"summary": summary},
        "identity": f"storm:{storm.id}:{storm.sent}",
    }  # fmt: skip


def _lasted(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _fields(alarm: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in alarm.items() if isinstance(v, str) and v and k not in ("source", "identity")}


@dataclass
class Tally:
    """What a summary says of the alarms it counts, added up one alarm at a time (none of them is kept)."""

    examples: int  # alarms kept in full, the first ones
    count: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    businesses: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    shown: list[dict[str, str]] = field(default_factory=list)
    first_time: str = ""
    last_time: str = ""
    source: str = ""

    def add(self, alarm: dict[str, Any]) -> None:
        """One alarm's fields ({} for one that cannot be read: it counts, with no fields)."""
        self.count += 1
        self.levels[str(alarm.get("alert_level") or "—")] += 1
        self.businesses[str(alarm.get("alert_business") or "—")] += 1
        self.hosts[str(alarm.get("alert_host") or alarm.get("alert_ip") or "—")] += 1
        if len(self.shown) < self.examples:
            self.shown.append(_fields(alarm))
        self.first_time = self.first_time or str(alarm.get("alert_time", ""))
        self.last_time = str(alarm.get("alert_time", self.last_time))
        self.source = self.source or str(alarm.get("source", ""))

    def breakdown(self, top: int) -> dict[str, Any]:
        """Counts by level, business and host, the largest first: the ``top`` of each by name, the rest as
        "more" (alarms) and "other" (names)."""
        found: dict[str, Any] = {"levels": [[k, v] for k, v in self.levels.most_common()], "more_levels": 0}
        for name, counts in (("businesses", self.businesses), ("hosts", self.hosts)):
            ranked = counts.most_common()
            found[name] = [[k, v] for k, v in ranked[:top]]
            found[f"more_{name}"] = sum(v for _, v in ranked[top:])
            found[f"other_{name}"] = max(0, len(ranked) - top)
        return found


async def _read(jobs: Sequence[Job], tally: Tally) -> str:
    """The taken jobs' alarms added to the tally; one payload to take the group and target from ("" if none can
    be read). The event loop gets a turn every thousand."""
    payload = ""
    for i, job in enumerate(jobs):
        if i % 1000 == 999:
            await asyncio.sleep(0)
        try:
            alarm = json.loads(job.payload)["alarm"]
            tally.add({k: alarm[k] for k in SLIM if k in alarm})
            payload = payload or job.payload
        except (ValueError, KeyError, TypeError):
            tally.add({})
    return payload
