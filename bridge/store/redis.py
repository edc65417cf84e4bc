"""The shared store: one Redis for any number of gateway replicas. Claims, leases and slots are atomic."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError, WatchError

from bridge import metrics, sentinel_url
from bridge.model import Group
from bridge.store import redis_scripts as scripts
from bridge.store.base import Admission, FailingOver, Job, Late, State, StoreError, dump_group, load_group

T = TypeVar("T")

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
        self._wait_millis = _millis(timeout / 2)  # WAIT's share of the store timeout, the script's is the rest
        self._redis, self._sentinels = connect(url, timeout, sentinel_auth)
        self._lease_script = self._redis.register_script(scripts.LEASE)
        self._acquire_script = self._redis.register_script(scripts.ACQUIRE)
        self._trim_script = self._redis.register_script(scripts.TRIM)
        self._settle_script = self._redis.register_script(scripts.SETTLE)
        self._admit_script = self._redis.register_script(scripts.ADMIT)
        self._take_script = self._redis.register_script(scripts.TAKE)

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except MasterNotFoundError as exc:
            raise FailingOver(f"redis: failing over: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    def _field(self, id: str, level: str) -> str:
        return json.dumps([id, level], ensure_ascii=False)

    async def ping(self) -> None:
        await self._run(self._redis.ping())

    async def risks(self) -> list[str]:
        info = await self._run(self._redis.info("all"))
        found = []
        limited = int(info.get("maxmemory", 0)) > 0  # no limit (0): it never evicts
        evicts = str(info.get("maxmemory_policy", "noeviction")) if limited else "noeviction"
        if evicts.startswith("allkeys"):
            found.append(
                f"Redis evicts any key when full (maxmemory-policy {evicts}): the outbox's jobs, and the "
                "accepted alarms in them, can be lost; set maxmemory-policy noeviction"
            )
        elif evicts.startswith("volatile"):
            found.append(
                f"Redis evicts keys that expire when full (maxmemory-policy {evicts}): a dedup claim can "
                "end before its window does, and a repeated alarm be delivered again; set noeviction"
            )
        if not int(info.get("aof_enabled", 0)):
            found.append(
                "Redis runs without appendonly: if it crashes, the outbox's latest jobs, and the accepted "
                "alarms in them, are lost; set appendonly yes"
            )
        elif await self._fsync() == "no":
            found.append(
                "Redis writes its appendonly file without fsync (appendfsync no): if its machine crashes, the "
                "outbox's jobs of the last seconds the system had not flushed are lost; set appendfsync everysec"
            )
        if self._sentinels and not self._min_replicas:
            found.append(
                "Redis fails over (Sentinel) but store.min_replicas is 0: an alarm answered 0 just before the "
                "primary dies may be missing on the replica that takes over; set store.min_replicas: 1"
            )
        return found

    async def _fsync(self) -> str:
        """The appendfsync policy, or "" where CONFIG is not allowed (managed Redis services often rename it)."""
        try:
            reply = await self._run(self._redis.config_get("appendfsync"))
        except StoreError:
            return ""
        return str(reply.get("appendfsync", ""))

    async def get_group(self, id: str, level: str) -> Group | None:
        data = await self._run(self._redis.hget(self._key(GROUPS), self._field(id, level)))
        return None if data is None else load_group(str(data))

    async def put_group(self, group: Group, replacing: Group | None) -> bool:
        return await self._run(self._put_group(group, replacing))

    async def _put_group(self, group: Group, replacing: Group | None) -> bool:
        key, field = self._key(GROUPS), self._field(group.id, group.level)
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
        return bool(await self._run(self._redis.hdel(self._key(GROUPS), self._field(id, level))))

    async def list_groups(self) -> list[Group]:
        data = await self._run(self._redis.hgetall(self._key(GROUPS)))
        return sorted((load_group(str(v)) for v in data.values()), key=lambda g: g.key)

    async def get(self, key: str) -> str | None:
        value = await self._run(self._redis.get(self._key(KV + key)))
        return None if value is None else str(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._run(self._redis.set(self._key(KV + key), value, px=_millis(ttl)))

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        stored = await self._run(self._redis.set(self._key(KV + key), value, px=_millis(ttl), nx=True))
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._run(self._redis.delete(self._key(KV + key)))

    async def admit(self, admissions: Sequence[Admission], lease: float, before: float = math.inf) -> list[bool]:
        keys, args = self._admission(admissions, time.time() + lease, before)
        if not self._min_replicas:
            won: Any = await self._run(self._admit_script(keys=keys, args=args))
            return _won(won)
        async with self._redis.pipeline(transaction=False) as pipe:  # one connection: WAIT counts its writes
            await self._admit_script(keys=keys, args=args, client=pipe)  # queued, not run
            pipe.execute_command("WAIT", self._min_replicas, self._wait_millis)
            won, acks = await self._run(pipe.execute())
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
            batch.append([claim, _millis(a.ttl), jobs, stale, marks])
            records += [f"{_fields(j, j.due or due)}\n{j.payload}" for j in a.jobs]
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
        found: Any = await self._run(script(keys=[self._key(DUE), self._key(JOBS), self._key(LEASED)], args=args))
        pairs = zip(found[::2], found[1::2], strict=True)
        return await self._dated([replace(_load(str(id), str(data)), due=until) for id, data in pairs])

    async def held(self, lane: str) -> int:
        return int(await self._run(self._redis.zcard(self._key(f"lane:{lane}"))))

    async def summarize(self, absorbed: Sequence[Job], summary: Job, key: str, value: str, ttl: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC: all of it, or none
            if absorbed:
                await self._settle_script(*self._settlement(absorbed), client=pipe)  # queued, not run
            await self._admit_script(*self._admission([Admission([summary])], summary.due), client=pipe)
            pipe.set(self._key(KV + key), value, px=_millis(ttl))
            await self._run(pipe.execute())
        self._done_since_trim += len(absorbed)

    def _settlement(self, jobs: Sequence[Job]) -> tuple[list[str], list[str]]:
        keys = [self._key(name) for name in (JOBS, CREATED, DUE, DONE, DEAD, LEASED)]
        changes = json.dumps([[j.id, j.state.value, j.due, j.created, j.lane] for j in jobs])
        return keys, [self._prefix, changes, *(_fields(j, j.due) for j in jobs)]

    async def settle(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        keys, args = self._settlement(jobs)
        await self._run(self._settle_script(keys=keys, args=args))
        self._done_since_trim += sum(1 for j in jobs if j.state is State.DONE)
        if self._done_since_trim > self._history // 10:  # forget done jobs beyond the history, now and then
            keys = [self._key(DONE), self._key(CREATED), self._key(JOBS)]
            await self._run(self._trim_script(keys=keys, args=[self._history]))
            self._done_since_trim = 0

    async def job(self, id: str) -> Job | None:
        data = await self._run(self._redis.hget(self._key(JOBS), id))
        if data is None:
            return None
        due = await self._run(self._redis.zscore(self._key(DUE), id))
        (job,) = await self._dated([_load(id, str(data))])
        return job if due is None else replace(job, due=float(due))

    async def jobs(self, state: State | None, limit: int, before: float | None = None) -> list[Job]:
        index = {None: CREATED, State.PENDING: DUE, State.DONE: DONE, State.DEAD: DEAD}[state]
        if state is State.PENDING:  # ordered by due time, not creation: read them all, then sort
            found_ids: Any = await self._run(self._redis.zrange(self._key(DUE), 0, -1))
        else:
            newest = "+inf" if before is None else f"({before!r}"
            call = self._redis.zrevrangebyscore(self._key(index), newest, "-inf", start=0, num=limit)
            found_ids = await self._run(call)
        ids = [str(i) for i in found_ids]
        if not ids:
            return []
        records = await self._run(self._redis.hmget(self._key(JOBS), ids))
        found = await self._dated([_load(id, str(d)) for id, d in zip(ids, records, strict=True) if d])
        found = [j for j in found if before is None or j.created < before]
        return sorted(found, key=lambda j: j.created, reverse=True)[:limit]

    async def _dated(self, jobs: list[Job]) -> list[Job]:
        """The jobs, those read from a damaged record (which lost its creation time) dated by the index of creation
        times: listed where they belong, and settled without moving there."""
        dated = []
        for job in jobs:
            created = None if job.created else await self._run(self._redis.zscore(self._key(CREATED), job.id))
            dated.append(job if created is None else replace(job, created=float(created)))
        return dated

    async def depth(self) -> int:
        return int(await self._run(self._redis.zcard(self._key(DUE))))

    async def acquire(self, key: str, limit: int, window: float) -> float:
        args: list[str | float] = [window, limit, uuid.uuid4().hex]
        wait: Any = await self._run(self._acquire_script(keys=[self._key(SLOTS + key)], args=args))
        return float(wait)

    async def close(self) -> None:
        await self._redis.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()


def _millis(seconds: float) -> int:
    """A key's time to live as Redis takes it: whole milliseconds, at least one."""
    return max(1, int(seconds * 1000))


def _fields(job: Job, due: float) -> str:
    """A record's first line: the job's fields but the payload (due as given), as a JSON array. Written out here:
    one json.dumps of the fields per job cost as much CPU as the rest of a Redis settle."""
    id, detail, times = json.dumps(job.id), json.dumps(job.detail), f"{due!r}, {job.created!r}"
    progress = json.dumps(job.progress) if job.progress else '""'
    rest = f'{job.attempts}, {detail}, {job.updated!r}, {job.code}, {progress}, "{job.lane}"'  # a lane needs no escape
    return f'[{id}, "{job.state.value}", {times}, {rest}]'


def _load(id: str, record: str) -> Job:
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


def connect(url: str, timeout: float, sentinel_auth: tuple[str, str]) -> tuple[aioredis.Redis, list[aioredis.Redis]]:
    """A client of the Redis the URL names; of a Sentinel URL, of the primary the Sentinels name at each connect,
    and the clients of the Sentinels (closed with it)."""
    sockets: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if not url.startswith(sentinel_url.SCHEMES):
        return aioredis.Redis.from_url(url, decode_responses=True, **sockets), []
    target = sentinel_url.parse(url)
    servers: dict[str, Any] = dict(parse_url(target.server_url))
    for name in ("host", "port", "connection_class"):  # the Sentinels name the host; TLS is the flag below
        servers.pop(name, None)
    tls = {k: v for k, v in servers.items() if k.startswith("ssl_")} | {"ssl": True} if target.tls else {}
    username, password = sentinel_auth
    asked = {**sockets, **tls, "username": username or None, "password": password or None}
    sentinels = Sentinel(target.sentinels, sentinel_kwargs=asked, decode_responses=True, **sockets, **servers,
                         ssl=target.tls)  # fmt: skip
    primary: aioredis.Redis = sentinels.master_for(target.service, connection_pool_class=_Primary)
    return primary, list(sentinels.sentinels)


class _Primary(SentinelConnectionPool):
    """Counts the primary's changes it is told of: the failovers this process has seen."""

    async def get_master_address(self) -> Any:
        before = self.master_address
        address = await super().get_master_address()  # type: ignore[no-untyped-call]  # redis-py leaves it bare
        if before is not None and address != before:
            metrics.STORE_FAILOVERS.inc()
        return address


def _won(won: Any) -> list[bool]:
    """ADMIT's answer: whether each admission was written (Late if Redis came to it after the deadline)."""
    if won == scripts.LATE:
        raise Late("Redis came to the write after the deadline")
    return [bool(w) for w in won]
