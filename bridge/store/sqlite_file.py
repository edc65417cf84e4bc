"""The embedded store's file: its tables, the pragmas each connection runs with, and the moves from the layouts
of older versions, made when such a file is opened."""

from __future__ import annotations

import sqlite3
import time

BUSY = 5.0  # seconds a call waits for another process's write lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (id TEXT NOT NULL, level TEXT NOT NULL, data TEXT NOT NULL,
                                   PRIMARY KEY (id, level));
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, state TEXT NOT NULL, due REAL NOT NULL,
                                       created REAL NOT NULL, attempts INTEGER NOT NULL, detail TEXT NOT NULL,
                                       updated REAL NOT NULL, code INTEGER NOT NULL,
                                       progress TEXT NOT NULL DEFAULT '', lane TEXT NOT NULL DEFAULT '',
                                       leased REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries (state, created);
CREATE INDEX IF NOT EXISTS deliveries_newest ON deliveries (created);
CREATE TABLE IF NOT EXISTS payloads (id TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS payloads_forgotten AFTER DELETE ON deliveries
    BEGIN DELETE FROM payloads WHERE id = old.id; END;
CREATE TABLE IF NOT EXISTS slots (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS slots_key ON slots (key, at);
"""
# Columns that older files lack: a job's progress, its target's rate key, and when its lease ends.
_ADDED = {
    "progress": "TEXT NOT NULL DEFAULT ''",
    "lane": "TEXT NOT NULL DEFAULT ''",
    "leased": "REAL NOT NULL DEFAULT 0",
}
# Older files, each moved to this layout when opened: the outbox table held a job in one row; before it, the
# jobs table held a job as one JSON document. Neither knew of a job's progress.
_OLDER = "id, state, due, created, attempts, detail, updated, code"
_MIGRATE = {
    "outbox": (
        f"INSERT OR IGNORE INTO deliveries ({_OLDER}) SELECT {_OLDER} FROM outbox",  # noqa: S608
        "INSERT OR IGNORE INTO payloads SELECT id, payload FROM outbox",
        "DROP TABLE outbox",
    ),
    "jobs": (
        f"INSERT OR IGNORE INTO deliveries ({_OLDER}) SELECT id, state, due, created,"  # noqa: S608
        " json_extract(data, '$.attempts'), json_extract(data, '$.detail'), json_extract(data, '$.updated'),"
        " coalesce(json_extract(data, '$.code'), 0) FROM jobs",
        "INSERT OR IGNORE INTO payloads SELECT id, json_extract(data, '$.payload') FROM jobs",
        "DROP TABLE jobs",
    ),
}


def prepare(conn: sqlite3.Connection) -> None:
    """A new connection: the journal mode and pragmas, the layout, and an older file's jobs moved into it."""
    deadline = time.monotonic() + BUSY
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:  # two processes opening a new file at once
            # Switching to WAL takes a lock that SQLite's busy timeout does not wait for: wait here instead.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    conn.execute("PRAGMA synchronous=NORMAL")
    # Each call's savepoint copies the pages it changes to a statement journal, a temp file once it passes
    # 64 KiB: kept in memory, a group commit writes no page twice (an eighth of B1's CPU per alarm).
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
        for column, kind in _ADDED.items():  # an older file
            if column not in columns:
                conn.execute(f"ALTER TABLE deliveries ADD COLUMN {column} {kind}")
        # A target's pending jobs, for its storm summaries (see bridge.storm).
        conn.execute("CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries (lane, created) WHERE state = 'pending'")
        for table, statements in _MIGRATE.items():
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
                for statement in statements:
                    conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
