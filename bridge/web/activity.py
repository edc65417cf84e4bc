"""What happened to alarms: the outbox's jobs read back as alarms with one delivery per target, and test alarms.

Job payloads hold the whole group, robot webhooks included: only names, states and details are read out of them.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo

from bridge.actions import ACK
from bridge.config import StormSettings
from bridge.gateway import MUTED, Gateway, Result
from bridge.model import OPTIONAL_FIELDS, REQUIRED_FIELDS, Alarm, Group, label
from bridge.schema import ConfigError, load_target
from bridge.store import Job, State, Store
from bridge.storm import Storm, Tally, summary_alarm

SCANNED = 2000  # the newest deliveries the group pages look through
PAGE_SCAN = 20_000  # deliveries at most that one page of the alarm list looks through (it says where it stopped)
_CHUNK = 1000
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


@dataclass(frozen=True)
class Filters:
    group: str = ""  # "id" or "id/level"
    code: int | None = None
    state: str = ""  # one of STATES: an alarm with any delivery in that state (done: delivered, not muted)
    since: float | None = None
    until: float | None = None
    target: str = ""  # a delivery's target type (and app), e.g. "dingtalk-robot"
    level: str = ""  # 高 | 中 | 低
    business: str = ""  # a part of alert_business (an Alertmanager alert's alertname)
    host: str = ""  # a part of alert_host or alert_ip (an Alertmanager alert's instance)
    storm: str = ""  # a storm's id: the alarms its summaries counted

    def match(self, record: AlarmRecord) -> bool:
        gid, level = record.group
        fields = record.fields
        if self.group and self.group not in (gid, f"{gid}/{level}"):
            return False
        if self.target and all(d.target != self.target and d.target.split(" ")[0] != self.target
                               for d in record.deliveries):  # fmt: skip
            return False
        if self.level and fields.get("alert_level") != self.level:
            return False
        if self.business and self.business not in fields.get("alert_business", ""):
            return False
        if self.host and all(self.host not in fields.get(k, "") for k in ("alert_host", "alert_ip")):
            return False
        if self.storm and (record.storm is None or record.storm[0] != self.storm):
            return False
        if self.code is not None and all(d.code != self.code for d in record.deliveries):
            return False
        if self.state and all(d.shown != self.state for d in record.deliveries):
            return False
        if self.since is not None and record.created < self.since:
            return False
        return self.until is None or record.created <= self.until


STATES = ("pending", "done", "dead", "muted")  # what the alarm list filters by
TEXT_FILTERS = ("group", "target", "level", "business", "host", "storm")


def filters(query: Mapping[str, str], code: int | None, since: float | None, until: float | None) -> Filters:
    """The alarm list's filters from a page's or an API call's query (the times and code already read)."""
    state = query.get("state", "")
    texts = {name: query.get(name, "").strip() for name in TEXT_FILTERS}
    return Filters(code=code, state=state if state in STATES else "", since=since, until=until,
                   **texts)  # fmt: skip


def cursor(value: str) -> float | None:
    """A page's ``before``: a creation time the previous page gave, or None (from the newest); ValueError if not."""
    if not value:
        return None
    found = float(value)
    if not math.isfinite(found):
        raise ValueError(value)
    return found


async def recent(store: Store, filters: Filters = Filters(), limit: int = 200) -> list[AlarmRecord]:
    return [r for r in records(await store.jobs(None, SCANNED)) if filters.match(r)][:limit]


@dataclass(frozen=True)
class Page:
    alarms: list[AlarmRecord]
    next: float | None  # where the next page starts (a creation time, for ``before``); None: no older alarm
    scanned: int  # deliveries looked through


async def page(store: Store, filters: Filters, limit: int, before: float | None = None) -> Page:
    """Up to ``limit`` alarms that match, newest first, created before ``before``: read back a chunk at a time,
    from the newest (or from ``until``), for at most PAGE_SCAN deliveries; so a list of 100,000 alarms pages."""
    found: list[AlarmRecord] = []
    cursor = before if filters.until is None else min(before or float("inf"), filters.until + 1e-6)
    scanned = 0
    while len(found) < limit and scanned < PAGE_SCAN:
        jobs = await store.jobs(None, _CHUNK, before=cursor)
        if len(jobs) == _CHUNK:  # an alarm's jobs share a creation time: the last one's may go on in the next chunk
            whole = [j for j in jobs if j.created != jobs[-1].created]
            jobs = whole or jobs
        if not jobs:
            return Page(found, None, scanned)
        scanned += len(jobs)
        for record in records(jobs):
            if filters.match(record):
                found.append(record)
                if len(found) == limit:
                    return Page(found, record.created, scanned)
        cursor = jobs[-1].created
        if filters.since is not None and cursor < filters.since:
            return Page(found, None, scanned)
    return Page(found, cursor, scanned)


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


def test_alarm(group: Group, who: str, dep: str, env: str, alert_level: str, business: str, zone: tzinfo) -> Alarm:
    """A test alarm for the group; its own identity, so that the dedup window never holds it back."""
    return Alarm(
        id=group.id,
        level=group.level,
        dep=dep,
        env=env,
        alert_level=alert_level,
        alert_time=datetime.now(zone).strftime("%Y-%m-%d %H:%M:%S"),
        alert_business=business or "alarm-bridge 测试告警 / test alarm",
        notes=f"测试告警, sent by {who} from alarm-bridge's configuration page",
        identity=f"test:{uuid.uuid4().hex}",
    )


async def send_test(gateway: Gateway, alarm: Alarm) -> tuple[Result, list[Delivery]]:
    """The test alarm through the real delivery path, and each target's delivery as far as it got."""
    result = await gateway.accept(alarm)
    jobs = await gateway.store.jobs(None, 200)
    jobs = [j for j in jobs if read(j).identity == alarm.identity]
    found = records(jobs)
    return result, found[0].deliveries if found else []


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


SAMPLES: dict[str, dict[str, str]] = {
    "seed": {
        "dep": "du-srv",
        "env": "prod",
        "alert_level": "高",
        "alert_time": "2018-01-1 01:01:01",
        "alert_business": "陈敏测试alert_business",
        "alert_function": "陈敏测试alert_function",
        "exception_spec": "陈敏测试之异常说明",
    },
    "full": {
        "dep": "du-op",
        "env": "prod",
        "alert_level": "中",
        "alert_time": "2024-05-20 09:30:00",
        "alert_business": "订单服务",
        "alert_function": "支付回调",
        "alert_host": "pay-api-03",
        "alert_ip": "10.0.3.17",
        "exception_spec": "TimeoutError: 支付网关 5 秒无响应",
        "status": "firing",
        "notes": "已自动重试 3 次",
        "others": "trace_id=4bf92f3577b34da6",
    },
    "low": {
        "dep": "du-fe",
        "env": "dev",
        "alert_level": "低",
        "alert_time": "2024-05-20 23:59:59",
        "alert_business": "静态资源",
        "exception_spec": "CDN 命中率低于 80%",
    },
}
SAMPLES["storm"] = SAMPLES["full"]  # its alarms are this one's, on six hosts, at every level
SAMPLE_NAMES = {
    "seed": "the seed's example (高)", "full": "every field (中)", "low": "few fields (低)",
    "storm": "a storm's first summary (240 alarms)",
}  # fmt: skip
_SAMPLE_STORM = StormSettings(120.0, 30.0, 90.0, 4, 5, 3, 50_000, "https://alarm-bridge.example")


def sample_alarm(name: str, group: Group, settings: StormSettings | None = None) -> Alarm:
    """A sample alarm for the group, or a storm's summary of sample alarms (as ``settings`` would make it)."""
    fields = {**SAMPLES[name], "id": group.id, "level": group.level}
    if name != "storm":
        return Alarm.from_fields(fields)
    now = time.time()
    settings = settings or _SAMPLE_STORM
    tally = Tally(settings.examples)
    for i in range(240):
        tally.add(fields | {"alert_host": f"pay-api-{i % 6:02d}", "alert_level": "高中低"[i % 3]})
    storm = Storm("sample", now - 40, now, tally.count, 1, now, "")
    return Alarm(**summary_alarm(storm, settings, fields, tally, 0))
