from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.helpers import REDIS_URL, RUN_PREFIX


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_in_redis() -> Iterator[None]:
    """The run's keys are deleted when it ends, gateways' and stores' alike (many have no TTL: jobs, groups)."""
    yield
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for keys in _batches(client.scan_iter(f"{RUN_PREFIX}*", count=1000)):
            client.delete(*keys)
    except RedisConnectionError:  # no Redis on this laptop: the Redis tests skipped
        pass
    finally:
        client.close()


def _batches(keys: Iterator[bytes], size: int = 1000) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
