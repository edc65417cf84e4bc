"""The store: groups, dedup claims and cached values, embedded (SQLite) or shared (Redis)."""

from __future__ import annotations

from bridge.store.base import Admission, FailingOver, Job, Late, State, Store, StoreError, StoreSettings


def open_store(settings: StoreSettings) -> Store:
    if settings.url.startswith("sqlite:///"):
        from bridge.store.sqlite import SqliteStore

        return SqliteStore(settings.url.removeprefix("sqlite:///"), settings.history)
    from bridge.store.redis import RedisStore

    return RedisStore(
        settings.url,
        settings.prefix,
        settings.timeout,
        settings.history,
        sentinel_auth=(settings.sentinel_username, settings.sentinel_password),
        min_replicas=settings.min_replicas,
    )


__all__ = ["Admission", "FailingOver", "Job", "Late", "State", "Store", "StoreError", "StoreSettings", "open_store"]
