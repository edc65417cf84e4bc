"""What happened to alarms: the outbox's jobs read back as alarms with one delivery per target, and test alarms.

Job payloads hold the whole group, robot webhooks included: only names, states and details are read out of them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo

from bridge.actions import ACK
from bridge.gateway import MUTED
from bridge.model import OPTIONAL_FIELDS, REQUIRED_FIELDS, Group, label
from bridge.schema import ConfigError, load_target
from bridge.store import Job, State, Store

_STORM = re.compile(r"summarized in storm (\w+) message (\d+)")
_REJECTED = re.compile(r"(?:rejected userids: ([^;]+)$|invalid users: ([^;\s]+))")


@dataclass(frozen=True)
class Delivery:
    job: str
    target: str  # the target's label (see model.label), never its webhook
    state: State
    attempts: int
    code: int | None  # 0 when delivered, 4000..4007 when it failed, None before the first attempt
    detail: str
    updated: float

    @property
    def shown(self) -> str:
        """Its state as the alarm list filters it: a muted delivery is done, yet nobody got it."""
        return "muted" if self.detail.startswith(MUTED) else self.state.value

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.job,
            "target": self.target,
            "state": self.state.value,
            "attempts": self.attempts,
            "code": self.code,
            "detail": self.detail,
            "updated": self.updated,
        }


@dataclass
class AlarmRecord:
    id: str
    created: float
    group: tuple[str, str]
    group_name: str
    fields: dict[str, str]  # the alarm's native fields
    deliveries: list[Delivery] = field(default_factory=list)
    subject: str = ""  # its action links' subject (bridge.actions)
    acknowledged: dict[str, object] | None = None  # by whom and when, once someone did

    @property
    def storm(self) -> tuple[str, str] | None:
        """The storm that summarized the alarm, and in which of its messages."""
        for delivery in self.deliveries:
            if match := _STORM.match(delivery.detail):
                return match[1], match[2]
        return None

    @property
    def state(self) -> str:
        if self.deliveries and all(d.shown == "muted" for d in self.deliveries):
            return "muted"
        states = {d.state for d in self.deliveries}
        for state in (State.DEAD, State.PENDING):
            if state in states:
                return state.value
        return State.DONE.value

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "created": self.created,
            "group": {"id": self.group[0], "level": self.group[1], "name": self.group_name},
            "state": self.state,
            "storm": None if self.storm is None else {"id": self.storm[0], "message": int(self.storm[1])},
            "alarm": self.fields,
            "acknowledged": self.acknowledged,
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


def code_of(job: Job) -> int | None:
    """The seed's code of a delivery's last attempt, or None before the first."""
    return None if job.attempts == 0 else job.code


@dataclass(frozen=True)
class Read:
    """What a job's payload says of its alarm, as far as it can be read (a damaged one is listed all the same)."""

    group: tuple[str, str]
    group_name: str
    fields: dict[str, str]  # the alarm's native fields
    target: str  # the target's label (see model.label), never its webhook
    identity: str = ""  # a test alarm's
    subject: str = ""  # its action links' subject


def read(job: Job) -> Read:
    try:
        data = json.loads(job.payload)
        group, alarm = data["group"], data["alarm"]
        kind = label(load_target(group["channels"][data["target"]]))
        names = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
        fields = {k: str(alarm[k]) for k in names if isinstance(alarm.get(k), str) and alarm[k]}
        key = (str(group["id"]), str(group["level"]))
        marker = (alarm.get("extra") or {}).get("actions") or {}
        subject = str(marker.get("subject", "")) if isinstance(marker, dict) else ""
        return Read(key, str(group.get("name", "")), fields, kind, str(alarm.get("identity") or ""), subject)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, ConfigError):  # its delivery says why: dead
        return Read(("?", "?"), "", {}, "unreadable")


def _order(job_id: str) -> tuple[int, str]:
    """A delivery's place in its alarm: by its target's index ("ALARM:2", or "ALARM:2+1" for a mail sent again)."""
    target = job_id.rpartition(":")[2]
    index = target.partition("+")[0]
    return (int(index) if index.isdigit() else 0, target)


def records(jobs: Iterable[Job]) -> list[AlarmRecord]:
    """Jobs (one per alarm and target) as alarms, newest first."""
    found: dict[str, AlarmRecord] = {}
    for job in jobs:
        read_back = read(job)
        alarm_id = job.id.rpartition(":")[0] or job.id
        record = found.get(alarm_id)
        if record is None:
            record = found[alarm_id] = AlarmRecord(
                alarm_id, job.created, read_back.group, read_back.group_name, read_back.fields, [], read_back.subject
            )
        record.created = min(record.created, job.created)
        code = code_of(job)
        record.deliveries.append(
            Delivery(job.id, read_back.target, job.state, job.attempts, code, job.detail, job.updated or job.created)
        )
    for record in found.values():
        record.deliveries.sort(key=lambda d: _order(d.job))
    return sorted(found.values(), key=lambda r: r.created, reverse=True)


async def with_acknowledgements(store: Store, found: Sequence[AlarmRecord]) -> None:
    """Who acknowledged each of the alarms, and when (from their action links)."""
    for record in found:
        if record.subject and (raw := await store.get(ACK + record.subject)) is not None:
            record.acknowledged = json.loads(raw)


def last_alarms(found: Sequence[AlarmRecord]) -> dict[tuple[str, str], float]:
    last: dict[tuple[str, str], float] = {}
    for record in found:
        last.setdefault(record.group, record.created)
    return last


def rejected_userids(found: Sequence[AlarmRecord], group: Group, zone: tzinfo) -> dict[str, str]:
    """User ids DingTalk or WeCom refused in the latest attempt of each of the group's targets -> which and when."""
    seen: set[str] = set()
    flagged: dict[str, str] = {}
    for record in found:  # newest first
        if record.group != group.key:
            continue
        for delivery in record.deliveries:
            if delivery.attempts == 0 or delivery.target in seen:
                continue
            seen.add(delivery.target)
            match = _REJECTED.search(delivery.detail)
            if match:
                ids = re.split(r"\s*[,|]\s*", (match[1] or match[2]).strip())
                when = datetime.fromtimestamp(delivery.updated, zone).strftime("%Y-%m-%d %H:%M")
                for userid in ids:
                    flagged.setdefault(userid, f"{delivery.target} rejected it at {when}")
    return flagged


async def retry(store: Store, job_id: str) -> Job | None:
    """A dead delivery back in the outbox as new (as `alarm-bridge deliveries retry` does); None if not dead."""
    job = await store.job(job_id)
    if job is None or job.state is not State.DEAD:
        return None
    # Two retries of one dead delivery at once (two clicks, two replicas, the page and the command) put it back
    # once: a second would make it pending again after the first had it sent.
    if not await store.put_new(f"retry:{job.id}:{job.updated!r}", "1", 3600.0):
        return None
    now = time.time()
    job = replace(job, state=State.PENDING, due=now, created=now, attempts=0)
    await store.settle([job])
    return job
