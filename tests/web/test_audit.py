"""The audit log in both stores: concurrent writers lose nothing, the oldest entries go first, newest first out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from bridge.store import Store, StoreSettings, open_store
from bridge.web import audit
from tests.helpers import REDIS_URL
from tests.store.test_contract import redis_prefix

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two connections to one store, as two replicas have."""
    if request.param == "sqlite":
        settings = StoreSettings(url=f"sqlite:///{tmp_path / 'store.db'}", timeout=2.0, prefix="", history=5)
    else:
        settings = StoreSettings(url=REDIS_URL, timeout=2.0, prefix=redis_prefix(), history=5)
    first, second = open_store(settings), open_store(settings)
    yield first, second
    await first.close()
    await second.close()
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{settings.prefix}*"):
            client.delete(key)


async def test_concurrent_writers_on_two_replicas_lose_no_entry(stores: tuple[Store, Store]) -> None:
    first, second = stores
    await asyncio.gather(
        *(audit.record(store, f"user{i}", "group.update", f"g/{i}", "name") for i in range(15) for store in stores)
    )
    entries = await audit.entries(second, 100)
    assert len(entries) == 30
    assert [e.number for e in entries] == list(range(30, 0, -1))
    assert sorted(e.who for e in entries) == sorted(f"user{i}" for i in range(15) for _ in range(2))
    assert await audit.entries(first, 100) == entries


async def test_a_line_break_in_what_someone_typed_stays_in_one_log_line(
    stores: tuple[Store, Store], caplog: pytest.LogCaptureFixture
) -> None:
    forged = "bob\n2026-11-29 15:40:00,000 WARNING bridge.web.auth [-] web: failed login for 'root'"
    with caplog.at_level(logging.INFO, "bridge.web.audit"):
        await audit.record(stores[0], "alice", "group.update", "ops/1", f"members added: {forged}")
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert (await audit.entries(stores[0], 1))[0].detail == f"members added: {forged}"  # the trail keeps it as typed


async def test_newest_first_with_paging(stores: tuple[Store, Store]) -> None:
    store = stores[0]
    for i in range(5):
        await audit.record(store, "alice", "group.create", f"g/{i}", f"created {i}")
    newest = await audit.entries(store, 2)
    assert [(e.number, e.target) for e in newest] == [(5, "g/4"), (4, "g/3")]
    older = await audit.entries(store, 2, before=newest[-1].number)
    assert [e.number for e in older] == [3, 2]
    assert newest[0].at >= older[0].at > 0 and newest[0].who == "alice" and newest[0].detail == "created 4"


async def test_only_the_newest_entries_are_kept(stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "KEEP", 3)
    for i in range(7):
        await audit.record(stores[0], "alice", "group.update", f"g/{i}")
    assert [e.number for e in await audit.entries(stores[1], 100)] == [7, 6, 5]
