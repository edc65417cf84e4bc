"""The Redis client: of a plain URL's server or of the primary its Sentinels name, its failures as the store's,
and what in the server's setup can lose what it holds."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from bridge import metrics, sentinel_url
from bridge.store.base import FailingOver, StoreError

T = TypeVar("T")


async def run(call: Awaitable[T]) -> T:
    """The call's answer; its failure as the store's."""
    try:
        return await call
    except MasterNotFoundError as exc:
        raise FailingOver(f"redis: failing over: {exc}") from exc
    except RedisError as exc:
        raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc


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


async def risks(client: aioredis.Redis, failover: bool, min_replicas: int) -> list[str]:
    """What in the Redis setup can lose accepted alarms or dedup claims, as warnings to log at start."""
    info = await run(client.info("all"))
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
    elif await _fsync(client) == "no":
        found.append(
            "Redis writes its appendonly file without fsync (appendfsync no): if its machine crashes, the "
            "outbox's jobs of the last seconds the system had not flushed are lost; set appendfsync everysec"
        )
    if failover and not min_replicas:
        found.append(
            "Redis fails over (Sentinel) but store.min_replicas is 0: an alarm answered 0 just before the "
            "primary dies may be missing on the replica that takes over; set store.min_replicas: 1"
        )
    return found


async def _fsync(client: aioredis.Redis) -> str:
    """The appendfsync policy, or "" where CONFIG is not allowed (managed Redis services often rename it)."""
    try:
        reply = await run(client.config_get("appendfsync"))
    except StoreError:
        return ""
    return str(reply.get("appendfsync", ""))
