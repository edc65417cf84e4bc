"""Fixtures the HTTP channel tests share: one client session and one embedded store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.store import Store
from tests.channels._shared import sqlite_store


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = sqlite_store(tmp_path)
    yield store
    await store.close()
