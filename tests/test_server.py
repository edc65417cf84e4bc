"""Slow clients against a real gateway process: dropped within the deadlines, while other clients are served."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from bridge.config_file import parse
from bridge.schema import ConfigError
from tests.helpers import REDIS_URL, config_data, gateway_process, seed_alarm, signed, write_config

DEADLINE = 1.0  # header_timeout and body_timeout in the test's config
SLOW = 60  # connections of each kind


def _open(url: str, sent: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(sent)
    return conn


def _closed_by(conn: socket.socket, deadline: float) -> bool:
    """Whether the gateway closed the connection (EOF or reset) before the deadline."""
    conn.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        while conn.recv(4096):
            pass  # an answer (a 400, say) before the close is fine
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def test_slow_clients_are_dropped_while_normal_ones_are_served(tmp_path: Path) -> None:
    server = {"header_timeout": f"{DEADLINE}s", "body_timeout": f"{DEADLINE}s", "max_connections": 500}
    path = write_config(tmp_path / "bridge.yaml", config_data(REDIS_URL, server=server))
    body = json.dumps(signed(seed_alarm())).encode()
    with gateway_process(path) as url:
        started = time.monotonic()
        slow = [_open(url, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(SLOW)]  # headers
        slow += [_open(url, b"") for _ in range(SLOW)]  # nothing at all
        head = f"POST /alarm_v2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        slow += [_open(url, head + body[:10]) for _ in range(SLOW)]  # half a body
        for _ in range(20):  # meanwhile, others are served
            assert requests.get(f"{url}/-/healthy", timeout=5).status_code == 200
        assert requests.post(f"{url}/alarm_v2", data=body, timeout=5).json()["code"] == 0
        closed = [_closed_by(conn, started + DEADLINE + 5) for conn in slow]
        for conn in slow:
            conn.close()
    assert closed.count(False) == 0, f"{closed.count(False)} of {len(slow)} slow connections still open"


def test_past_the_connection_cap_requests_get_503_until_the_slow_are_dropped(tmp_path: Path) -> None:
    server = {"header_timeout": f"{DEADLINE}s", "max_connections": 20}
    path = write_config(tmp_path / "bridge.yaml", config_data(REDIS_URL, server=server))
    with gateway_process(path) as url:
        started = time.monotonic()
        slow = [_open(url, b"GET / HTTP/1.1\r\n") for _ in range(25)]
        assert requests.get(f"{url}/-/healthy", timeout=5).status_code == 503
        assert all(_closed_by(conn, started + DEADLINE + 5) for conn in slow)
        assert requests.get(f"{url}/-/healthy", timeout=5).status_code == 200
        for conn in slow:
            conn.close()


@pytest.mark.parametrize("key", ["header_timeout", "body_timeout"])
def test_a_zero_deadline_is_refused_at_load(key: str) -> None:
    with pytest.raises(ConfigError, match=f"server.{key}: must be more than 0"):
        parse(config_data(REDIS_URL, server={key: 0}), "t.yaml")
