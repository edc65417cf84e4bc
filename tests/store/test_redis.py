"""What only the Redis store has: records written by the first layout (each job one JSON document)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import redis

from bridge.store import State
from bridge.store.redis import CREATED, DUE, JOBS, RedisStore
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
