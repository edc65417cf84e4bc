"""What only the Redis store has: records written by the first layout (each job one JSON document), and damaged
ones."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import redis

from bridge.store import Admission, Job, State
from bridge.store.redis import RedisStore
from bridge.store.redis_records import CREATED, DUE, JOBS
from tests.helpers import REDIS_URL
from tests.store.test_contract import redis_prefix

pytestmark = pytest.mark.anyio


async def test_jobs_of_the_first_layout_are_leased_settled_and_keep_their_payload() -> None:
    prefix = redis_prefix()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    payload = '{"target": 1, "alarm": {"notes": "第一行\\n第二行"}}'
    old = {"id": "a:1", "payload": payload, "created": 1.5, "due": 2.0, "state": "pending", "attempts": 2,
           "detail": "HTTP 502", "updated": 3.0, "code": 4002}  # fmt: skip
    client.hset(prefix + JOBS, "a:1", json.dumps(old, ensure_ascii=False))
    client.zadd(prefix + DUE, {"a:1": 2.0})
    client.zadd(prefix + CREATED, {"a:1": 1.5})
    store = RedisStore(REDIS_URL, prefix, timeout=2.0, history=100)
    try:
        (leased,) = await store.lease(10, lease=60)
        assert (leased.id, leased.payload, leased.attempts, leased.detail, leased.code) == (
            "a:1", payload, 2, "HTTP 502", 4002
        )  # fmt: skip
        await store.settle([replace(leased, state=State.DONE, attempts=3, detail="", code=0, updated=time.time())])
        done = await store.job("a:1")
        assert done is not None
        assert (done.state, done.payload, done.attempts, done.created) == (State.DONE, payload, 3, 1.5)
    finally:
        await store.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_a_record_written_before_progress_or_with_a_damaged_one_reads_with_none() -> None:
    prefix = redis_prefix()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.hset(prefix + JOBS, "a:0", '["a:0", "pending", 2.0, 1.5, 2, "HTTP 502", 3.0, 4002]\n{"target": 0}')
    client.hset(prefix + JOBS, "b:0", '["b:0", "pending", 2.0, 1.6, 2, "HTTP 502", 3.0, 4002, null]\n{"target": 0}')
    client.zadd(prefix + DUE, {"a:0": 2.0, "b:0": 2.0})
    client.zadd(prefix + CREATED, {"a:0": 1.5, "b:0": 1.6})
    store = RedisStore(REDIS_URL, prefix, timeout=2.0, history=100)
    try:
        leased = sorted(await store.lease(10, lease=60), key=lambda j: j.id)
        assert [(j.payload, j.attempts, j.code, j.progress) for j in leased] == [('{"target": 0}', 2, 4002, "")] * 2
    finally:
        await store.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_a_damaged_record_is_leased_without_its_payload_and_holds_back_no_other() -> None:
    prefix = redis_prefix()
    store = RedisStore(REDIS_URL, prefix, timeout=2.0, history=100)
    try:
        jobs = [Job(f"a{n}:0", f'{{"target": 0, "n": {n}}}', created=float(n + 1)) for n in range(3)]
        await store.admit([Admission(jobs)], lease=0)
        client = redis.Redis.from_url(REDIS_URL)
        client.hset(prefix + JOBS, "a1:0", "garbage{")
        client.zadd(prefix + DUE, {f"orphan{n}": 0.0 for n in range(20)})  # due ids whose job is gone
        assert await store.lease(10, lease=60) == []  # the first ten orphans, dropped
        leased = sorted(await store.lease(20, lease=60), key=lambda j: j.id)
        assert [(j.id, j.payload) for j in leased] == [(j.id, j.payload if j.id != "a1:0" else "") for j in jobs]
        assert [j.created for j in leased] == [1.0, 2.0, 3.0]  # the damaged one's from the index of creation times
        assert [j.id for j in await store.jobs(None, 10)] == ["a2:0", "a1:0", "a0:0"]  # listed, as unreadable
        dead = replace(leased[1], state=State.DEAD, attempts=1, detail="cannot be read", updated=time.time())
        await store.settle([dead])  # the outbox dead-letters it, saying why
        assert client.zcard(prefix + DUE) == 2  # the two leased jobs: no orphan left to take a place in a lease
        settled = await store.job("a1:0")
        assert settled is not None and (settled.state, settled.detail, settled.payload, settled.created) == (
            State.DEAD,
            "cannot be read",
            "",
            2.0,
        )
        assert [j.id for j in await store.jobs(None, 10)] == ["a2:0", "a1:0", "a0:0"]  # still where it was
    finally:
        await store.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
