"""The alarm list: its filters, and its pages, read back from the outbox a chunk at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.store import Store
from bridge.web.activity import AlarmRecord, records

SCANNED = 2000  # the newest deliveries the group pages look through
PAGE_SCAN = 20_000  # deliveries at most that one page of the alarm list looks through (it says where it stopped)
_CHUNK = 1000


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
