"""What a storm's summary says: the alarms it counts added up, and the summary as an alarm of its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.actions import ActionSettings, Subject, keep
from bridge.config import StormSettings
from bridge.model import Mention
from bridge.store import Job, Store

SLIM = ("alert_level", "alert_business", "alert_host", "alert_ip", "alert_time", "alert_function", "exception_spec",
        "source")  # fmt: skip  # what a summary reads of each alarm


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


def _fields(alarm: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in alarm.items() if isinstance(v, str) and v and k not in ("source", "identity")}


async def read(jobs: Sequence[Job], tally: Tally) -> str:
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


def lasted(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


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
        "lasted": lasted(storm.last - storm.started),
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


def summary_job(storm: Storm, settings: StormSettings, payload: str, tally: Tally, held: int) -> Job:
    """The summary's job: the group and target of the storm's jobs, and a summary alarm in place of theirs."""
    data = json.loads(payload)
    if storm.sent > 1:  # only the first summary of a storm mentions the members
        data["group"]["mention"] = Mention.NONE.value
    data["alarm"] = summary_alarm(storm, settings, data["alarm"], tally, held)
    now = time.time()
    return Job(f"storm:{storm.id}:{storm.sent}", json.dumps(data, ensure_ascii=False), now, due=now)


async def with_ack_link(store: Store, actions: ActionSettings | None, storm: Storm, summary: Job) -> Job:
    """The summary with a link that acknowledges the storm (the storm is its subject: see bridge.actions), when
    action links are on and the storm goes on."""
    if actions is None or storm.ended:
        return summary
    data = json.loads(summary.payload)
    alarm = data["alarm"]
    group = (str(alarm["id"]), str(alarm["level"]))
    subject = Subject(f"storm{storm.id}", group, str(alarm["source"]), str(alarm["alert_business"]), "",
                      str(alarm["alert_level"]), f"【告警风暴】storm {storm.id} of {'/'.join(group)}",
                      str(alarm["dep"]), str(alarm["env"]))  # fmt: skip
    expires = int(time.time() + actions.expires)
    await keep(store, subject, expires)
    alarm["extra"]["actions"] = {"subject": subject.id, "expires": expires, "labels": False, "only": "ack"}
    return replace(summary, payload=json.dumps(data, ensure_ascii=False))
