"""One contract, both stores: the embedded SQLite file and a real Redis server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bridge.config import StoreSettings
from bridge.model import DingTalkRobot, Email, Format, Group, Member, Mention
from bridge.store import Store, open_store
from tests.helpers import REDIS_URL

pytestmark = pytest.mark.anyio


def redis_prefix() -> str:
    """A fresh key prefix on the test Redis (skips on a laptop without one, fails under CI=true)."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except RedisConnectionError:
        message = f"no Redis at {REDIS_URL} (make test starts one)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        settings = StoreSettings(url=f"sqlite:///{tmp_path / 'store.db'}", timeout=2.0, prefix="")
    else:
        settings = StoreSettings(url=REDIS_URL, timeout=2.0, prefix=redis_prefix())
    s = open_store(settings)
    yield s
    await s.close()
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{settings.prefix}*"):
            client.delete(key)


GROUP = Group(
    id="chenmin",
    level="3",
    name="数据组",
    members=(Member(name="陈敏", mail="chenmin@example.com", mobile="13800000000", dingtalk_userid="cm"),),
    targets=(DingTalkRobot(webhook="https://robot.example/send?access_token=t", secret="SEC1"), Email(to=("a@b.c",))),
    format=Format.MARKDOWN,
    mention=Mention.MEMBERS,
    dedup_window=60.0,
    templates={"native/text.j2": "{{ alarm.alert_business }}"},
)


async def test_groups_round_trip(store: Store) -> None:
    assert await store.get_group("chenmin", "3") is None
    await store.put_group(GROUP)
    assert await store.get_group("chenmin", "3") == GROUP
    assert await store.get_group("chenmin", "4") is None
    other = Group(id="a:b", level="1")
    await store.put_group(other)
    assert await store.list_groups() == [other, GROUP]


async def test_put_group_replaces_and_delete_removes(store: Store) -> None:
    await store.put_group(GROUP)
    renamed = Group(id="chenmin", level="3", name="renamed")
    await store.put_group(renamed)
    assert await store.get_group("chenmin", "3") == renamed
    assert await store.delete_group("chenmin", "3") is True
    assert await store.delete_group("chenmin", "3") is False
    assert await store.list_groups() == []


async def test_values_expire(store: Store) -> None:
    await store.put("token:app", "abc", ttl=0.3)
    assert await store.get("token:app") == "abc"
    await asyncio.sleep(0.4)
    assert await store.get("token:app") is None


async def test_put_overwrites_and_delete(store: Store) -> None:
    await store.put("chat:g", "one", ttl=60)
    await store.put("chat:g", "two", ttl=60)
    assert await store.get("chat:g") == "two"
    await store.delete("chat:g")
    assert await store.get("chat:g") is None


async def test_put_new_is_atomic_under_concurrency(store: Store) -> None:
    results = await asyncio.gather(*(store.put_new("dedup:x", str(i), ttl=60) for i in range(50)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.get("dedup:x") == str(winner)


async def test_put_new_succeeds_again_once_expired(store: Store) -> None:
    assert await store.put_new("dedup:y", "1", ttl=0.2) is True
    assert await store.put_new("dedup:y", "2", ttl=0.2) is False
    await asyncio.sleep(0.3)
    assert await store.put_new("dedup:y", "3", ttl=0.2) is True
    assert await store.get("dedup:y") == "3"


async def test_ping(store: Store) -> None:
    await store.ping()
