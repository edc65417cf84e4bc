"""/alarm_v2 over HTTP: every documented reply code, in the documented check order."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from tests.helpers import free_port, make_settings, seed_alarm, signed


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 's.db'}"))) as c:
        yield c


def post_json(client: TestClient, body: Any, path: str = "/alarm_v2") -> dict[str, Any]:
    response = client.post(path, content=json.dumps(body) if not isinstance(body, bytes) else body)
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    return reply


def test_seed_example_is_accepted_with_exactly_code_0(client: TestClient) -> None:
    response = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm())))
    assert response.status_code == 200
    assert response.text == '{"code": 0}'
    assert response.headers["content-type"].startswith("application/json")


def test_trailing_slash_is_the_same_endpoint(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm()), "/alarm_v2/") == {"code": 0}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_answer_1004(client: TestClient, method: str) -> None:
    response = client.request(method, "/alarm_v2")
    assert response.status_code == 200
    assert response.json()["code"] == 1004
    assert "POST" in response.json()["msg"]


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe\x00", b"{'id': 'x'}", b"[" * 50_000])
def test_unparseable_body_answers_1002(client: TestClient, body: bytes) -> None:
    assert post_json(client, body)["code"] == 1002


@pytest.mark.parametrize("key", ["notes", "\udc00"])
def test_a_lone_surrogate_escape_answers_1002(client: TestClient, key: str) -> None:
    """JSON can spell half of a UTF-16 pair (``"\\ud800"``), which is no Unicode text to sign, store or echo."""
    alarm = {**signed(seed_alarm()), key: "disk \ud800 full"}
    reply = post_json(client, json.dumps(alarm).encode())
    assert reply["code"] == 1002
    assert "surrogate" in reply["msg"]
    assert post_json(client, json.dumps(signed(seed_alarm(notes="😀"))).encode()) == {"code": 0}  # a pair is fine


@pytest.mark.parametrize("body", [[], ["id"], "text", 3, None, True])
def test_a_body_that_is_not_an_object_answers_1000(client: TestClient, body: Any) -> None:
    assert post_json(client, body)["code"] == 1000


def test_missing_required_field_answers_1001_and_names_it(client: TestClient) -> None:
    fields = seed_alarm()
    del fields["alert_time"]
    reply = post_json(client, signed(fields))
    assert reply["code"] == 1001
    assert "alert_time" in reply["msg"]


def test_unknown_field_answers_1001_and_names_it(client: TestClient) -> None:
    reply = post_json(client, signed(seed_alarm(colour="red")))
    assert reply["code"] == 1001
    assert "colour" in reply["msg"]


def test_missing_sign_answers_1001(client: TestClient) -> None:
    assert post_json(client, seed_alarm())["code"] == 1001


def test_alert_level_outside_high_medium_low_answers_1001(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm(alert_level="critical")))["code"] == 1001


def test_body_over_the_limit_is_refused_with_1001(client: TestClient) -> None:
    fields = signed(seed_alarm(notes="x" * 70_000))
    reply = post_json(client, fields)
    assert reply["code"] == 1001
    assert "65536" in reply["msg"]


def test_body_over_the_limit_is_refused_even_when_streamed_without_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"notes": "'
        for _ in range(100):
            yield b"x" * 1024

    response = client.post("/alarm_v2", content=chunks())
    assert response.json()["code"] == 1001


@pytest.mark.parametrize("value", [3, 3.5, None, True, ["a"], {"a": "b"}])
def test_a_value_that_is_not_a_string_answers_2009(client: TestClient, value: Any) -> None:
    fields: dict[str, Any] = signed(seed_alarm())
    fields["level"] = value
    reply = post_json(client, fields)
    assert reply["code"] == 2009
    assert "level" in reply["msg"]


def test_unknown_department_answers_2002(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm(dep="du-xx")))["code"] == 2002


def test_unknown_environment_answers_2003(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm(env="staging")))["code"] == 2003


def test_wrong_sign_answers_2000(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm(), secret="another-secret"))["code"] == 2000
    tampered = signed(seed_alarm())
    tampered["exception_spec"] = "changed after signing"
    assert post_json(client, tampered)["code"] == 2000


def test_non_ascii_sign_answers_2000(client: TestClient) -> None:
    fields = signed(seed_alarm())
    fields["sign"] = "签名" * 16
    assert post_json(client, fields)["code"] == 2000


def test_unknown_group_answers_3001(client: TestClient) -> None:
    reply = post_json(client, signed(seed_alarm(level="4")))
    assert reply["code"] == 3001
    assert "'4'" in reply["msg"]


def test_same_alarm_within_the_window_answers_1010_even_at_another_time(client: TestClient) -> None:
    assert post_json(client, signed(seed_alarm())) == {"code": 0}
    assert post_json(client, signed(seed_alarm()))["code"] == 1010
    assert post_json(client, signed(seed_alarm(alert_time="2018-01-1 01:05:00")))["code"] == 1010
    assert post_json(client, signed(seed_alarm(exception_spec="another problem"))) == {"code": 0}
    assert post_json(client, signed(seed_alarm(env="dev"))) == {"code": 0}


def test_the_window_is_per_group_and_expires(tmp_path: Path) -> None:
    group = {"id": "chenmin", "level": "3", "dedup_window": "300ms"}
    settings = make_settings(f"sqlite:///{tmp_path / 's.db'}", groups=[group])
    with TestClient(create_app(settings)) as client:
        assert post_json(client, signed(seed_alarm())) == {"code": 0}  # no channels: nothing to send
        assert post_json(client, signed(seed_alarm()))["code"] == 1010
        time.sleep(0.4)
        assert post_json(client, signed(seed_alarm()))["code"] == 0


def test_groups_added_to_the_store_are_found(tmp_path: Path) -> None:
    from bridge.model import Group

    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 's.db'}"))) as client:
        assert post_json(client, signed(seed_alarm(id="wangwu")))["code"] == 3001
        assert client.portal is not None
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        client.portal.call(gateway.store.put_group, Group(id="wangwu", level="3"), None)
        assert post_json(client, signed(seed_alarm(id="wangwu")))["code"] == 0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"id": 1, "colour": "red"}, 1001),  # unknown keys are checked before value types
        ({"level": 3, "dep": "du-xx"}, 2009),  # value types before the department
        ({"dep": "du-xx", "env": "qa"}, 2002),  # department before environment
        ({"env": "qa", "alert_level": "huge"}, 2003),  # environment before alert_level
        ({"alert_level": "huge", "sign": "0" * 32}, 1001),  # alert_level before the sign
        ({"sign": "0" * 32, "level": "9"}, 2000),  # the sign before the group lookup
    ],
)
def test_check_order(client: TestClient, fields: dict[str, Any], code: int) -> None:
    body: dict[str, Any] = signed(seed_alarm())
    body.update(fields)
    assert post_json(client, body)["code"] == code


def test_unreachable_store_answers_3000(tmp_path: Path) -> None:
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        reply = post_json(client, signed(seed_alarm(level="9")))
        assert reply["code"] == 3000
        assert "redis" not in reply["msg"].lower()  # no internals in the reply


def test_a_store_that_fails_unexpectedly_gives_3000_and_the_next_alarm_goes_through(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    admit = store.admit

    async def broken(*args: Any, **kwargs: Any) -> list[bool]:
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(store, "admit", broken)
    reply = post_json(client, signed(seed_alarm()))
    assert reply["code"] == 3000 and "bug" not in reply["msg"]
    assert any("writing accepted alarms failed" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(store, "admit", admit)
    assert post_json(client, signed(seed_alarm())) == {"code": 0}  # the failed write left no claim behind


def test_a_store_too_slow_to_answer_in_time_writes_nothing_so_the_retry_is_delivered_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with TestClient(create_app(make_settings(f"sqlite:///{path}"))) as client:  # store.timeout 1s
        assert post_json(client, signed(seed_alarm(notes="warm-up"))) == {"code": 0}
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 1.5 s
        threading.Timer(1.5, other.close).start()
        assert post_json(client, signed(seed_alarm()))["code"] == 3000  # no answer in time ...
        time.sleep(0.5)
        assert post_json(client, signed(seed_alarm())) == {"code": 0}  # ... and not written when the lock came
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        jobs = client.portal.call(store.jobs, None, 10)
    assert len(jobs) == 2  # the warm-up's and the retry's, each once


def test_a_store_that_never_answers_gives_3000_instead_of_a_hang() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        store = {"url": f"redis://127.0.0.1:{listener.getsockname()[1]}/0", "timeout": "300ms"}
        with TestClient(create_app(make_settings("", store=store))) as client:
            assert post_json(client, signed(seed_alarm(level="9")))["code"] == 3000
    finally:
        for s in [*accepted, listener]:
            s.close()
