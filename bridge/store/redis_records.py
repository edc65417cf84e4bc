"""How the Redis store lays out what it holds: the key names under its prefix, and a job's record."""

from __future__ import annotations

import json

from bridge.store.base import Job, State

# Key names under the configured prefix.
GROUPS = "groups"  # hash: JSON [id, level] -> group JSON
KV = "kv:"  # string keys with expiry: dedup claims, tokens, chat ids
JOBS = "jobs"  # hash: job id -> record: the job's fields as JSON, a line break, the payload as written
DUE = "due"  # sorted set: pending job id -> due time (a lease moves it forward)
CREATED = "created"  # sorted set: every job id -> creation time, for listing newest first
DONE = "done"  # sorted set: done job id -> creation time, trimmed to the history size
DEAD = "dead"  # sorted set: dead job id -> creation time
SLOTS = "slots:"  # sorted sets: rate-limit key -> send times
LEASED = "leased"  # sorted set: job id -> when the lease on it ends (a job settled since is not in it)
# and "lane:" + rate key: sorted sets of a lane's pending job ids -> creation time, named in the scripts


def group_field(id: str, level: str) -> str:
    """A group's field in the groups hash."""
    return json.dumps([id, level], ensure_ascii=False)


def millis(seconds: float) -> int:
    """A key's time to live as Redis takes it: whole milliseconds, at least one."""
    return max(1, int(seconds * 1000))


def dump_fields(job: Job, due: float) -> str:
    """A record's first line: the job's fields but the payload (due as given), as a JSON array. Written out here:
    one json.dumps of the fields per job cost as much CPU as the rest of a Redis settle."""
    id, detail, times = json.dumps(job.id), json.dumps(job.detail), f"{due!r}, {job.created!r}"
    progress = json.dumps(job.progress) if job.progress else '""'
    rest = f'{job.attempts}, {detail}, {job.updated!r}, {job.code}, {progress}, "{job.lane}"'  # a lane needs no escape
    return f'[{id}, "{job.state.value}", {times}, {rest}]'


def load_job(id: str, record: str) -> Job:
    """A job from its record. One that cannot be read (damaged) is a job with no payload, which the outbox
    dead-letters, saying why, and the listings show as unreadable."""
    line, _, payload = record.partition("\n")
    try:
        fields = json.loads(line)
        if isinstance(fields, dict):  # a record of the first layout: one object, the payload one of its fields
            return Job(**{**fields, "state": State(fields["state"])})
        _, state, due, created, attempts, detail, updated, code, *rest = fields  # older records lack the rest
        progress, lane = [*(str(r) for r in rest if isinstance(r, str)), "", ""][:2]
        return Job(id, payload, created, due, State(state), attempts, detail, updated, code, progress, lane)
    except (ValueError, TypeError, KeyError):
        return Job(id, "", 0.0)
