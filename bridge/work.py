"""What the outbox delivers: one target's jobs with their alarms and group, read back from the jobs' payloads; and
what becomes of a job after an attempt."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridge import metrics
from bridge.config import DeliverySettings
from bridge.dispatch import Dispatcher
from bridge.model import Alarm, Channel, Group, Message, Outcome, Target
from bridge.render import Renderer
from bridge.schema import ConfigError, Node, parse_group
from bridge.store import Job, State

# What reading a job's payload raises when it is not what this version writes (ValueError covers bad JSON).
_UNREADABLE = (ValueError, KeyError, IndexError, TypeError, ConfigError)


@dataclass(frozen=True)
class InForce:
    """What a reload replaces: the senders, the templates and the delivery settings. The outbox holds the one in
    force; its parts ask it for what is in force now, so a reload reaches each of them at once."""

    dispatcher: Dispatcher
    renderer: Renderer
    settings: DeliverySettings


@dataclass(frozen=True)
class Work:
    """Jobs for one target, decoded, and when their lease to this process ends (time.monotonic())."""

    group: Group
    target: Target
    jobs: list[Job]
    alarms: list[Alarm]
    leased_until: float


def read_leased(jobs: Sequence[Job], leased_until: float) -> tuple[list[Work], list[tuple[Job, Exception]]]:
    """Leased jobs as work, one per target, and the jobs whose payload cannot be read, each with why."""
    batches: dict[str, list[tuple[Job, dict[str, Any]]]] = {}
    unreadable: list[tuple[Job, Exception]] = []
    for job in jobs:
        try:
            data = json.loads(job.payload)  # once per job: the key here, the alarm and group in _decode
            group, target = data["group"], data["target"]
            # The members too: a mail made again for some recipients has none, and must not merge with the others.
            # And the mentions: a storm's later summaries mention nobody.
            key = json.dumps([group["id"], group["level"], group["channels"][target], group.get("members"),
                              group.get("mention")])  # fmt: skip
        except _UNREADABLE as exc:
            unreadable.append((job, exc))
            continue
        batches.setdefault(key, []).append((job, data))
    works = []
    for batch in batches.values():
        try:
            works.append(_decode(batch, leased_until))
        except _UNREADABLE as exc:
            unreadable += [(job, exc) for job, _ in batch]
    return works, unreadable


def _decode(batch: list[tuple[Job, dict[str, Any]]], leased_until: float) -> Work:
    data = batch[0][1]
    group = parse_group(Node("outbox", "group", data["group"]), source=f"{data['group']['id']}")
    alarms = [Alarm(**each["alarm"]) for _, each in batch]
    return Work(group, group.targets[data["target"]], [job for job, _ in batch], alarms, leased_until)


def unread(unreadable: Sequence[tuple[Job, Exception]], now: float) -> list[Job]:
    """Jobs whose payload cannot be read, dead, each saying why."""
    return [
        replace(job, state=State.DEAD, attempts=job.attempts + 1, updated=now, detail=f"cannot be read: {exc!r}"[:300])
        for job, exc in unreadable
    ]


def attempted(
    job: Job, outcome: Outcome, now: float, settings: DeliverySettings, channel: Channel, progress: str
) -> Job:
    """The job after an attempt: done, pending again after a backoff, or dead; ``progress`` is what it records of
    its message (see ``progress``)."""
    attempts, due = job.attempts + 1, job.due
    if outcome.ok:
        state = State.DONE
    elif outcome.retryable and now - job.created < settings.max_age:
        metrics.RETRIES.labels(channel=channel).inc()
        delay = min(settings.backoff_max, settings.backoff * 2 ** (attempts - 1))
        state, due = State.PENDING, now + delay * random.uniform(0.5, 1.0)
    else:
        metrics.DEAD_LETTERS.labels(channel=channel, target=outcome.target).inc()
        state = State.DEAD
    # Made anew rather than by dataclasses.replace, which costs three times as much: this runs for every job.
    return Job(
        job.id, job.payload, job.created, due, state, attempts, outcome.detail, now, outcome.code, progress, job.lane
    )


def mailed_again(job: Job, recipients: Sequence[str]) -> Job:
    """A new job for an email job's mail, to these addresses alone (its group's members left out)."""
    data = json.loads(job.payload)
    data["group"]["members"] = []  # every address is in the target's "to"
    data["group"]["channels"][data["target"]] = {"type": "email", "to": list(recipients)}
    payload = json.dumps(data, ensure_ascii=False)
    return Job(id=f"{job.id}+{job.attempts + 1}", payload=payload, created=job.created)


def progress(message: Message, outcome: Outcome, parts: int) -> str:
    """What a job records of its message after an attempt: how many of its ``parts`` the upstream has, and in which
    app chat, with the message's digest, so that a retry sends only the rest, and only of the same message split
    the same way ("" if none)."""
    if outcome.ok:
        return ""
    # None: the attempt sent no part, and the upstream has what it had
    sent, chat = (message.skip, message.chat) if outcome.sent is None else (outcome.sent, outcome.chat)
    return f"{sent}/{parts} {_digest(message)} {chat}" if sent else ""


def resumed(message: Message, progress: str, parts: int) -> Message:
    """The message, to be sent from the part after those the job's progress says the upstream has; whole if the
    progress is of another message or of another split of it, or cannot be read."""
    count, digest, chat = [*progress.split(" "), "", ""][:3]
    sent, _, of = count.partition("/")
    if sent.isdecimal() and of == str(parts) and int(sent) < parts and digest == _digest(message):
        return replace(message, skip=int(sent), chat=chat)
    return message


def _digest(message: Message) -> str:
    return hashlib.sha256(f"{message.format}\n{message.title}\n{message.body}".encode()).hexdigest()[:16]
