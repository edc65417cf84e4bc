"""bench.sentinel's Sentinel set for the tests: without the binaries a test skips on a laptop and fails under CI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import sentinel
from bench.sentinel import SentinelSet
from tests.helpers import require_binary


@contextmanager
def sentinel_set(
    folder: Path, password: str = "", sentinel_password: str = "", tls: bool = False
) -> Iterator[SentinelSet]:
    for name in ("redis-server", "redis-sentinel", "openssl"):
        require_binary(name)
    with sentinel.sentinel_set(folder, password, sentinel_password, tls) as found:
        yield found
