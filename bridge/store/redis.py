"""The shared store: one Redis for any number of gateway replicas. Claims, leases and slots are atomic."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.exceptions import WatchError

from bridge import metrics
from bridge.model import Group
from bridge.store import redis_scripts as scripts
from bridge.store.base import Admission, Job, Late, State, StoreError, dump_group, load_group
from bridge.store.redis_client import connect, risks, run
from bridge.store.redis_records import (
    CREATED,
    DEAD,
    DONE,
    DUE,
    GROUPS,
    JOBS,
    KV,
    LEASED,
    SLOTS,
    dump_fields,
    group_field,
    load_job,
    millis,
)


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float,
        history: int,
        *,
        sentinel_auth: tuple[str, str] = ("", ""),
        min_replicas: int = 0,
    ) -> None:
        self._prefix = prefix
        self._history = history
        self._done_since_trim = 0
        self._min_replicas = min_replicas
        self._wait_millis = millis(timeout / 2)  # WAIT's share of the store timeout, the script's is the rest
        self._redis, self._sentinels = connect(url, timeout, sentinel_auth)
        self._lease_script = self._redis.register_script(scripts.LEASE)
        self._acquire_script = self._redis.register_script(scripts.ACQUIRE)
        self._trim_script = self._redis.register_script(scripts.TRIM)
        self._settle_script = self._redis.register_script(scripts.SETTLE)
        self._admit_script = self._redis.register_script(scripts.ADMIT)
        self._take_script = self._redis.register_script(scripts.TAKE)

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def ping(self) -> None:
        await run(self._redis.ping())

    async def risks(self) -> list[str]:
        return await risks(self._redis, bool(self._sentinels), self._min_replicas)

    async def get_group(self, id: str, level: str) -> Group | None:
        data = await run(self._redis.hget(self._key(GROUPS), group_field(id, level)))
        return None if data is None else load_group(str(data))

    async def put_group(self, group: Group, replacing: Group | None) -> bool:
        return await run(self._put_group(group, replacing))

    async def _put_group(self, group: Group, replacing: Group | None) -> bool:
        key, field = self._key(GROUPS), group_field(group.id, group.level)
        async with self._redis.pipeline() as pipe:
            while True:  # compared as groups, not as JSON: one stored by an older version reads the same
                await pipe.watch(key)
                data = await pipe.hget(key, field)
                if (None if data is None else load_group(str(data))) != replacing:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                pipe.hset(key, field, dump_group(group))
                try:
                    await pipe.execute()
                    return True
                except WatchError:  # a group was written meanwhile, maybe this one: read it again
                    continue

    async def delete_group(self, id: str, level: str) -> bool:
        return bool(await run(self._redis.hdel(self._key(GROUPS), group_field(id, level))))

    async def list_groups(self) -> list[Group]:
        data = await run(self._redis.hgetall(self._key(GROUPS)))
        return sorted((load_group(str(v)) for v in data.values()), key=lambda g: g.key)

    async def get(self, key: str) -> str | None:
        value = await run(self._redis.get(self._key(KV + key)))
        return None if value is None else str(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        await run(self._redis.set(self._key(KV + key), value, px=millis(ttl)))

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        stored = await run(self._redis.set(self._key(KV + key), value, px=millis(ttl), nx=True))
        return bool(stored)

    async def delete(self, key: str) -> None:
        await run(self._redis.delete(self._key(KV + key)))

    async def admit(self, admissions: Sequence[Admission], lease: float, before: float = math.inf) -> list[bool]:
        keys, args = self._admission(admissions, time.time() + lease, before)
        if not self._min_replicas:
            won: Any = await run(self._admit_script(keys=keys, args=args))
            return _won(won)
        async with self._redis.pipeline(transaction=False) as pipe:  # one connection: WAIT counts its writes
            await self._admit_script(keys=keys, args=args, client=pipe)  # queued, not run
            pipe.execute_command("WAIT", self._min_replicas, self._wait_millis)
            won, acks = await run(pipe.execute())
        if won != scripts.LATE and acks < self._min_replicas:  # on the primary, not known to be on a replica
            metrics.REPLICA_ACKS.labels(result="too_few").inc()
            raise StoreError(f"redis: {acks} of {self._min_replicas} replicas (store.min_replicas) acknowledged the "
                             f"write within {self._wait_millis} ms")  # fmt: skip
        metrics.REPLICA_ACKS.labels(result="acknowledged").inc()
        return _won(won)

    def _admission(
        self, admissions: Sequence[Admission], due: float, before: float = math.inf
    ) -> tuple[list[str], list[str]]:
        """ADMIT's keys and arguments; jobs without a due of their own leased to the caller until ``due``."""
        keys = [self._key(name) for name in (JOBS, CREATED, DUE, LEASED)]
        batch, records = [], []
        for a in admissions:
            if a.claim is not None:
                keys.append(self._key(KV + a.claim))
            claim = 0 if a.claim is None else len(keys)
            stale, marks = self._indexed(keys, a.stale), self._indexed(keys, a.marks)
            jobs = [[j.id, j.due or due, j.created, j.lane, 0 if j.due else due] for j in a.jobs]
            batch.append([claim, millis(a.ttl), jobs, stale, marks])
            records += [f"{dump_fields(j, j.due or due)}\n{j.payload}" for j in a.jobs]
        return keys, [self._prefix, "0" if before == math.inf else f"{before:.6f}", json.dumps(batch), *records]

    def _indexed(self, keys: list[str], names: Sequence[str]) -> list[int]:
        """The names' keys appended to ``keys``; their indexes there (as Lua counts)."""
        keys += [self._key(KV + name) for name in names]
        return list(range(len(keys) - len(names) + 1, len(keys) + 1))

    async def lease(self, limit: int, lease: float) -> list[Job]:
        now = time.time()
        return await self._leased(self._lease_script, [now, limit, now + lease], now + lease)

    async def take(self, lane: str, limit: int, lease: float) -> list[Job]:
        now = time.time()
        return await self._leased(self._take_script, [self._prefix, lane, now, limit, now + lease], now + lease)

    async def _leased(self, script: Any, args: list[Any], until: float) -> list[Job]:
        found: Any = await run(script(keys=[self._key(DUE), self._key(JOBS), self._key(LEASED)], args=args))
        pairs = zip(found[::2], found[1::2], strict=True)
        return await self._dated([replace(load_job(str(id), str(data)), due=until) for id, data in pairs])

    async def held(self, lane: str) -> int:
        return int(await run(self._redis.zcard(self._key(f"lane:{lane}"))))

    async def summarize(self, absorbed: Sequence[Job], summary: Job, key: str, value: str, ttl: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC: all of it, or none
            if absorbed:
                await self._settle_script(*self._settlement(absorbed), client=pipe)  # queued, not run
            await self._admit_script(*self._admission([Admission([summary])], summary.due), client=pipe)
            pipe.set(self._key(KV + key), value, px=millis(ttl))
            await run(pipe.execute())
        self._done_since_trim += len(absorbed)

    def _settlement(self, jobs: Sequence[Job]) -> tuple[list[str], list[str]]:
        keys = [self._key(name) for name in (JOBS, CREATED, DUE, DONE, DEAD, LEASED)]
        changes = json.dumps([[j.id, j.state.value, j.due, j.created, j.lane] for j in jobs])
        return keys, [self._prefix, changes, *(dump_fields(j, j.due) for j in jobs)]

    async def settle(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        keys, args = self._settlement(jobs)
        await run(self._settle_script(keys=keys, args=args))
        self._done_since_trim += sum(1 for j in jobs if j.state is State.DONE)
        if self._done_since_trim > self._history // 10:  # forget done jobs beyond the history, now and then
            keys = [self._key(DONE), self._key(CREATED), self._key(JOBS)]
            await run(self._trim_script(keys=keys, args=[self._history]))
            self._done_since_trim = 0

    async def job(self, id: str) -> Job | None:
        data = await run(self._redis.hget(self._key(JOBS), id))
        if data is None:
            return None
        due = await run(self._redis.zscore(self._key(DUE), id))
        (job,) = await self._dated([load_job(id, str(data))])
        return job if due is None else replace(job, due=float(due))

    async def jobs(self, state: State | None, limit: int, before: float | None = None) -> list[Job]:
        index = {None: CREATED, State.PENDING: DUE, State.DONE: DONE, State.DEAD: DEAD}[state]
        if state is State.PENDING:  # ordered by due time, not creation: read them all, then sort
            found_ids: Any = await run(self._redis.zrange(self._key(DUE), 0, -1))
        else:
            newest = "+inf" if before is None else f"({before!r}"
            call = self._redis.zrevrangebyscore(self._key(index), newest, "-inf", start=0, num=limit)
            found_ids = await run(call)
        ids = [str(i) for i in found_ids]
        if not ids:
            return []
        records = await run(self._redis.hmget(self._key(JOBS), ids))
        found = await self._dated([load_job(id, str(d)) for id, d in zip(ids, records, strict=True) if d])
        found = [j for j in found if before is None or j.created < before]
        return sorted(found, key=lambda j: j.created, reverse=True)[:limit]

    async def _dated(self, jobs: list[Job]) -> list[Job]:
        """The jobs, those read from a damaged record (which lost its creation time) dated by the index of creation
        times: listed where they belong, and settled without moving there."""
        dated = []
        for job in jobs:
            created = None if job.created else await run(self._redis.zscore(self._key(CREATED), job.id))
            dated.append(job if created is None else replace(job, created=float(created)))
        return dated

    async def depth(self) -> int:
        return int(await run(self._redis.zcard(self._key(DUE))))

    async def acquire(self, key: str, limit: int, window: float) -> float:
        args: list[str | float] = [window, limit, uuid.uuid4().hex]
        wait: Any = await run(self._acquire_script(keys=[self._key(SLOTS + key)], args=args))
        return float(wait)

    async def close(self) -> None:
        await self._redis.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()


def _won(won: Any) -> list[bool]:
    """ADMIT's answer: whether each admission was written (Late if Redis came to it after the deadline)."""
    if won == scripts.LATE:
        raise Late("Redis came to the write after the deadline")
    return [bool(w) for w in won]
