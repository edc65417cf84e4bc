"""Refusals that leave the body unread, against a real gateway process under concurrency: every client gets its
reply rather than a reset."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import REDIS_URL, config_data, gateway_process, write_config

BODY = b"x" * 300_000  # over /alarm_v2's 64 KiB, and more than the socket buffers hold
REFUSED = {"/alarm_v2": b"HTTP/1.1 200", "/alertmanager": b"HTTP/1.1 401"}  # the first: {"code": ..., "msg": ...}


def _send(url: str, path: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(head + BODY)
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
            return reply
    except ConnectionError as exc:
        return f"{type(exc).__name__}".encode()


def test_every_client_gets_its_refusal(tmp_path: Path) -> None:
    data = config_data(REDIS_URL, alertmanager={"bearer_token": "am-token-0123456789"})
    with gateway_process(write_config(tmp_path / "bridge.yaml", data)) as url, ThreadPoolExecutor(16) as pool:
        paths = [path for path in REFUSED for _ in range(200)]
        replies = list(pool.map(lambda path: (path, _send(url, path)), paths))
    missed = [(path, reply[:40]) for path, reply in replies if not reply.startswith(REFUSED[path])]
    assert not missed, f"{len(missed)} of {len(replies)} clients got no reply, e.g. {missed[:3]}"
    assert all(b"body over" in reply for path, reply in replies if path == "/alarm_v2")
