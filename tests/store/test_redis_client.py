"""The warnings about a Redis set up to lose what it holds."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.store.redis import RedisStore
from tests.helpers import free_port, make_settings, require_binary, wait_for_port

pytestmark = pytest.mark.anyio


@contextmanager
def redis_server(folder: Path, *options: str) -> Iterator[str]:
    """A Redis of its own, set up as the options say (the shared test Redis is left as it is)."""
    port = free_port()
    command = [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--dir", str(folder), *options]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        (("--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "noeviction"), []),
        (("--appendonly", "yes", "--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"), []),  # never full
        (("--appendonly", "no"), ["without appendonly"]),
        (("--appendonly", "yes", "--appendfsync", "no"), ["without fsync"]),
        (("--appendonly", "yes", "--appendfsync", "no", "--rename-command", "CONFIG", ""), []),  # cannot be seen
        (("--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"), ["evicts any key"]),
        (
            ("--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"),
            ["evicts keys that expire", "without appendonly"],
        ),
    ],
)
async def test_a_redis_that_can_lose_jobs_or_claims_is_named_as_a_risk(
    options: tuple[str, ...], warned: list[str], tmp_path: Path
) -> None:
    with redis_server(tmp_path, *options) as url:
        store = RedisStore(url, "test:", timeout=2.0, history=100)
        try:
            risks = await store.risks()
        finally:
            await store.close()
    assert len(risks) == len(warned) and all(w in r for w, r in zip(warned, risks, strict=True)), risks


def test_the_gateway_warns_at_start_of_a_redis_that_can_lose_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        redis_server(tmp_path, "--appendonly", "no") as url,
        caplog.at_level(logging.WARNING, "bridge.app"),
        TestClient(create_app(make_settings(url))),
    ):
        deadline = time.monotonic() + 10
        while "without appendonly" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "store: Redis runs without appendonly" in caplog.text
