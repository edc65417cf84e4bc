"""The one contract both stores implement; the shared contract tests in tests/store/ hold them to it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bridge.model import Group
from bridge.schema import Node, parse_group


@dataclass(frozen=True)
class StoreSettings:
    url: str
    timeout: float
    prefix: str
    history: int  # finished deliveries kept for listing (dead ones are always kept)
    sentinel_username: str = ""  # the Sentinels' own credentials (the servers' are in the URL)
    sentinel_password: str = field(default="", repr=False)
    min_replicas: int = 0  # replicas that must acknowledge an accepted alarm's outbox write (WAIT) before the reply


class StoreError(Exception):
    """The store could not be reached or failed; the gateway answers 3000."""


class Late(StoreError):
    """The store came to a write after the caller's deadline, and wrote nothing."""


class FailingOver(StoreError):
    """Redis's Sentinels name no primary that answers: one is being replaced, and 3000 is answered until it is."""


class State(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class Job:
    """One alarm's delivery to one target, kept in the outbox until it is done or dead."""

    id: str
    payload: str  # JSON, opaque to the store
    created: float
    due: float = 0.0
    state: State = State.PENDING
    attempts: int = 0
    detail: str = ""
    updated: float = 0.0
    code: int = 0  # the last attempt's reply code (0 when it delivered)
    progress: str = ""  # a split message's parts delivered before the last attempt failed, as the outbox wrote it
    lane: str = ""  # the rate key of its target (bridge.upstreams.rate_key): what a storm summary gathers by


@dataclass(frozen=True)
class Admission:
    """An alarm's jobs, written only if its dedup claim is won (the key is free for ``ttl`` seconds); no claim,
    always written. It is stale, and not written, when every key of ``stale`` is present (none: never stale);
    once written, each key of ``marks`` is set for ``ttl`` seconds."""

    jobs: Sequence[Job]
    claim: str | None = None
    ttl: float = 0.0
    stale: Sequence[str] = ()
    marks: Sequence[str] = ()


class Store(Protocol):
    async def ping(self) -> None: ...

    async def get_group(self, id: str, level: str) -> Group | None: ...

    async def put_group(self, group: Group, replacing: Group | None) -> bool:
        """Store the group only if the one stored under its id and level is still ``replacing`` (None: there is
        none); whether it was stored (atomic: of two writers that read the same group, one wins)."""
        ...

    async def delete_group(self, id: str, level: str) -> bool: ...

    async def list_groups(self) -> list[Group]: ...

    async def get(self, key: str) -> str | None:
        """A cached value, or None once it has expired."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        """Store the value only if the key is absent or expired; True if this call stored it (atomic)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def admit(self, admissions: Sequence[Admission], lease: float, before: float = math.inf) -> list[bool]:
        """Claim and write each admission in turn (a later one loses a claim an earlier one won, and is stale by
        the marks an earlier one set): whether each was written. Written jobs are leased to the caller for
        ``lease`` seconds: it makes the first attempt; a job with a ``due`` of its own (one a rate limit holds
        back) is leased to nobody and due then instead.

        A store that comes to the write after ``before`` (epoch seconds, by its own clock) writes nothing and
        raises ``Late``: a caller that has given up by then knows that its alarms were not written."""
        ...

    async def lease(self, limit: int, lease: float) -> list[Job]:
        """Up to ``limit`` due pending jobs, each leased for ``lease`` seconds; no two callers get the same job.

        A lease is the job's due time moved forward: a holder that dies leaves the job due again when it ends.
        """
        ...

    async def settle(self, jobs: Sequence[Job]) -> None:
        """Record the jobs' new state: pending again at ``due``, done, or dead (kept for listing and retry)."""
        ...

    async def held(self, lane: str) -> int:
        """How many jobs of the lane are pending."""
        ...

    async def take(self, lane: str, limit: int, lease: float) -> list[Job]:
        """Up to ``limit`` pending jobs of the lane that no one holds a lease on, whenever they are due, oldest first,
        each leased for ``lease`` seconds (a storm's summary gathers them; no two callers get the same job)."""
        ...

    async def summarize(self, absorbed: Sequence[Job], summary: Job, key: str, value: str, ttl: float) -> None:
        """At once, or not at all: the absorbed jobs settled, the summary's job written (leased to nobody, due
        then), and ``key`` set to ``value`` for ``ttl`` seconds; so that a crash counts no alarm twice or never."""
        ...

    async def job(self, id: str) -> Job | None: ...

    async def jobs(self, state: State | None, limit: int, before: float | None = None) -> list[Job]:
        """The newest jobs first (created before ``before``, if given), optionally in one state."""
        ...

    async def depth(self) -> int:
        """How many jobs are pending."""
        ...

    async def acquire(self, key: str, limit: int, window: float) -> float:
        """Take a slot of a sliding-window rate limit shared by every replica: 0.0 if taken, else seconds to wait."""
        ...

    async def risks(self) -> list[str]:
        """What in the store's own setup can lose accepted alarms or deliver one twice, for a warning at start."""
        ...

    async def close(self) -> None: ...


def dump_group(group: Group) -> str:
    return json.dumps(group.to_dict(), ensure_ascii=False, sort_keys=True)


def load_group(data: str) -> Group:
    return parse_group(Node("store", "group", json.loads(data)), source="store")
