"""The one contract both stores implement; the shared contract tests in tests/store/ hold them to it."""

from __future__ import annotations

import json
from typing import Protocol

from bridge.config import Node, parse_group
from bridge.model import Group


class StoreError(Exception):
    """The store could not be reached or failed; the gateway answers 3000."""


class Store(Protocol):
    async def ping(self) -> None: ...

    async def get_group(self, id: str, level: str) -> Group | None: ...

    async def put_group(self, group: Group) -> None: ...

    async def delete_group(self, id: str, level: str) -> bool: ...

    async def list_groups(self) -> list[Group]: ...

    async def get(self, key: str) -> str | None:
        """A cached value, or None once it has expired."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        """Store the value only if the key is absent or expired; True if this call stored it (atomic)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


def dump_group(group: Group) -> str:
    return json.dumps(group.to_dict(), ensure_ascii=False, sort_keys=True)


def load_group(data: str) -> Group:
    return parse_group(Node("store", "group", json.loads(data)), source="store")
