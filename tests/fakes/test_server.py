from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from aiohttp import web

from tests.fakes._server import FakeServer, Faults, ManualClock, RateLimiter, Records, TokenStore


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def _app(faults: Faults | None = None) -> web.Application:
    app = web.Application(middlewares=[faults.middleware] if faults else [])
    app.router.add_get("/", _hello)
    return app


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_start_serves_and_stop_leaves_no_thread_or_listener() -> None:
    before = set(threading.enumerate())
    with FakeServer(_app()) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.port > 0
        assert requests.get(server.url, timeout=5).text == "hello"
        assert set(threading.enumerate()) != before
    assert set(threading.enumerate()) == before
    assert _refused(server.port)


def test_port_in_use_raises_without_leaking_a_thread() -> None:
    before = set(threading.enumerate())
    with FakeServer(_app()) as first:
        with pytest.raises(OSError), FakeServer(_app(), port=first.port):
            pass
        assert requests.get(first.url, timeout=5).text == "hello"
    assert set(threading.enumerate()) == before


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_https_with_ssl_context(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    extension = ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(["openssl", *request, *extension, "-keyout", key, "-out", cert], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeServer(_app(), ssl_context=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert requests.get(server.url, verify=str(cert), timeout=5).text == "hello"


def test_fail_next_answers_plain_status_then_recovers() -> None:
    faults = Faults()
    faults.fail_next(2, status=502)
    with FakeServer(_app(faults)) as server:
        first, second, third = (requests.get(server.url, timeout=5) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (502, 502, 200)
    assert first.headers["Content-Type"].startswith("text/plain")
    assert faults.pending_failures == 0


def test_hang_delays_answers_and_stop_does_not_wait_for_it() -> None:
    faults = Faults()
    before = set(threading.enumerate())
    with FakeServer(_app(faults)) as server:
        faults.hang(30)
        with pytest.raises(requests.Timeout):
            requests.get(server.url, timeout=0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert set(threading.enumerate()) == before


def test_hang_then_unhang_answers_new_requests() -> None:
    faults = Faults()
    with FakeServer(_app(faults)) as server:
        faults.hang(0.3)
        started = time.monotonic()
        assert requests.get(server.url, timeout=5).text == "hello"
        assert time.monotonic() - started >= 0.3
        faults.unhang()
        assert requests.get(server.url, timeout=0.25).text == "hello"


def test_rate_limiter_is_a_sliding_window_per_key() -> None:
    clock = ManualClock()
    limiter = RateLimiter(3, 10.0, clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.advance(9.9)
    assert not limiter.allow("a")
    clock.advance(0.2)  # the first three hits leave the window together
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_records_wait_for_items_appended_by_another_thread() -> None:
    records: Records[int] = Records()
    threading.Timer(0.05, records.append, args=(7,)).start()
    assert records.wait_for(1) == [7]
    assert list(records) == [7] and records[-1] == 7 and len(records) == 1
    with pytest.raises(TimeoutError):
        records.wait_for(2, timeout=0.05)


def test_token_store_renews_only_when_asked() -> None:
    clock = ManualClock()
    renewing, fixed = TokenStore(100.0, clock, renew=True), TokenStore(100.0, clock, renew=False)
    first_r, _ = renewing.issue("app")
    first_f, _ = fixed.issue("app")
    clock.advance(60)
    assert renewing.issue("app") == (first_r, 100)
    assert fixed.issue("app") == (first_f, 40)
    clock.advance(60)
    assert renewing.check(first_r) == (TokenStore.VALID, "app")
    assert fixed.check(first_f) == (TokenStore.EXPIRED, None)
    assert fixed.issue("app")[0] != first_f
