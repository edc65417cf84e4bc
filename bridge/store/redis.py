"""The shared store: one Redis for any number of gateway replicas. Claims are atomic (SET NX PX)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.model import Group
from bridge.store.base import StoreError, dump_group, load_group

T = TypeVar("T")

GROUPS = "groups"  # hash: JSON [id, level] -> group JSON
KV = "kv:"  # string keys with expiry: dedup claims, tokens, chat ids


class RedisStore:
    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        self._prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except RedisError as exc:
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    def _field(self, id: str, level: str) -> str:
        return json.dumps([id, level], ensure_ascii=False)

    async def ping(self) -> None:
        await self._run(self._redis.ping())

    async def get_group(self, id: str, level: str) -> Group | None:
        data = await self._run(self._redis.hget(self._prefix + GROUPS, self._field(id, level)))
        return None if data is None else load_group(str(data))

    async def put_group(self, group: Group) -> None:
        await self._run(self._redis.hset(self._prefix + GROUPS, self._field(group.id, group.level), dump_group(group)))

    async def delete_group(self, id: str, level: str) -> bool:
        return bool(await self._run(self._redis.hdel(self._prefix + GROUPS, self._field(id, level))))

    async def list_groups(self) -> list[Group]:
        data = await self._run(self._redis.hgetall(self._prefix + GROUPS))
        return sorted((load_group(str(v)) for v in data.values()), key=lambda g: g.key)

    async def get(self, key: str) -> str | None:
        value = await self._run(self._redis.get(self._prefix + KV + key))
        return None if value is None else str(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._run(self._redis.set(self._prefix + KV + key, value, px=max(1, int(ttl * 1000))))

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        stored = await self._run(self._redis.set(self._prefix + KV + key, value, px=max(1, int(ttl * 1000)), nx=True))
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._run(self._redis.delete(self._prefix + KV + key))

    async def close(self) -> None:
        await self._redis.aclose()
