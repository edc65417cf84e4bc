"""The Redis store through Sentinel: a real primary, a replica and three Sentinels on loopback."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from bench.sentinel import SentinelSet
from bridge.app import create_app
from bridge.store import Admission, Store, StoreError, StoreSettings, open_store
from tests.helpers import make_settings
from tests.store.sentinel import sentinel_set
from tests.store.test_contract import job

pytestmark = pytest.mark.anyio
PREFIX = "test:"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path) as found:
        yield found


def store_for(sentinels: SentinelSet, min_replicas: int = 0) -> Store:
    return open_store(StoreSettings(sentinels.url, 1.0, PREFIX, 100, min_replicas=min_replicas))


def replica_port(sentinels: SentinelSet) -> int:
    (port,) = (p for p in sentinels.servers if p != sentinels.primary_port())
    return port


@pytest.mark.parametrize("min_replicas", [0, 1])
async def test_the_primary_is_found_through_sentinel_and_scripts_flushed_there_are_loaded_again(
    sentinels: SentinelSet, min_replicas: int
) -> None:
    store = store_for(sentinels, min_replicas)
    try:
        assert await store.admit([Admission([job(1)], "dedup:a", 60)], lease=0) == [True]
        with sentinels.client() as primary:
            primary.script_flush()  # as on a replica promoted since: scripts are not replicated
        assert await store.admit([Admission([job(2)], "dedup:a", 60), Admission([job(3)])], lease=0) == [False, True]
        assert sorted(j.id for j in await store.lease(10, lease=60)) == ["alarm1:0", "alarm3:0"]
    finally:
        await store.close()


@pytest.mark.parametrize(("min_replicas", "warned"), [(0, True), (1, False)])
async def test_a_sentinel_store_that_waits_for_no_replica_is_named_as_a_risk(
    sentinels: SentinelSet, min_replicas: int, warned: bool
) -> None:
    store = store_for(sentinels, min_replicas)
    try:
        risks = await store.risks()
    finally:
        await store.close()
    assert any("set store.min_replicas: 1" in r for r in risks) is warned, risks


async def test_a_write_no_replica_acknowledges_fails_and_stands_on_the_primary(sentinels: SentinelSet) -> None:
    replica = replica_port(sentinels)
    store = store_for(sentinels, min_replicas=1)
    try:
        assert await store.admit([Admission([job(1)], "dedup:a", 60)], lease=0) == [True]
        with redis.Redis(port=replica) as client:
            assert client.exists(f"{PREFIX}kv:dedup:a")  # on the replica before admit returned
        sentinels.servers[replica].send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="0 of 1 replicas"):
                await store.admit([Admission([job(2)], "dedup:b", 60)], lease=0)
        finally:
            sentinels.servers[replica].send_signal(signal.SIGCONT)
        # Written on the primary all the same: delivered, and the sender's retry of it is a duplicate.
        assert await store.admit([Admission([job(3)], "dedup:b", 60)], lease=0) == [False]
        assert sorted(j.id for j in await store.lease(10, lease=60)) == ["alarm1:0", "alarm2:0"]
    finally:
        await store.close()


async def test_after_the_primary_dies_the_new_one_is_found_and_the_failover_counted(sentinels: SentinelSet) -> None:
    store = store_for(sentinels)
    failovers = REGISTRY.get_sample_value("alarm_bridge_store_failovers_total") or 0.0
    try:
        assert await store.admit([Admission([job(1)], "dedup:a", 60)], lease=0) == [True]
        old = sentinels.primary_port()
        sentinels.kill(old)
        deadline = time.monotonic() + 30
        while True:
            try:
                won = await store.admit([Admission([job(2)], "dedup:a", 60)], lease=0)
                break
            except StoreError:  # until the Sentinels have promoted the replica
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert won == [False]  # the claim was on the replica that took over
        assert sentinels.primary_port() != old
        assert REGISTRY.get_sample_value("alarm_bridge_store_failovers_total") == failovers + 1
    finally:
        await store.close()


async def test_the_servers_password_is_in_the_url_and_the_sentinels_own_beside_it(tmp_path: Path) -> None:
    with sentinel_set(tmp_path, password="server-pw-1", sentinel_password="sentinel-pw-2") as sentinels:
        settings = StoreSettings(sentinels.url, 1.0, PREFIX, 100, sentinel_password="sentinel-pw-2", min_replicas=1)
        store = open_store(settings)
        try:
            assert await store.admit([Admission([job(1)], "dedup:a", 60)], lease=0) == [True]
        finally:
            await store.close()
        store = open_store(replace(settings, sentinel_password="wrong"))
        try:
            with pytest.raises(StoreError) as refused:
                await store.admit([Admission([job(2)], "dedup:b", 60)], lease=0)
        finally:
            await store.close()
    assert "wrong" not in str(refused.value) and "server-pw-1" not in str(refused.value)
    assert "No master found" in str(refused.value)  # no Sentinel answered: each refused the password


async def test_rediss_sentinel_speaks_tls_to_the_sentinels_and_the_servers(tmp_path: Path) -> None:
    with sentinel_set(tmp_path, tls=True) as sentinels:
        assert sentinels.url.startswith("rediss+sentinel://")
        store = store_for(sentinels, min_replicas=1)
        try:
            assert await store.admit([Admission([job(1)], "dedup:a", 60)], lease=0) == [True]
            assert [j.id for j in await store.lease(10, lease=60)] == ["alarm1:0"]
        finally:
            await store.close()


def test_ready_says_the_store_is_failing_over_while_no_primary_answers(sentinels: SentinelSet) -> None:
    settings = make_settings(sentinels.url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/-/ready").text == "OK"
        sentinels.kill(replica_port(sentinels))  # nothing to promote: the failover cannot end
        sentinels.kill(sentinels.primary_port())
        deadline = time.monotonic() + 30
        while "failing over" not in (reply := client.get("/-/ready")).text:
            assert reply.status_code == 503 and reply.text == "store unreachable"  # until the Sentinels agree
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert reply.status_code == 503
        assert f"No master found for '{'mymaster'}'" in reply.text
