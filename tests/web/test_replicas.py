"""Two gateway instances sharing one Redis: a group saved on either is used by both at once, and so are sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from tests.helpers import REDIS_URL, seed_alarm, signed
from tests.store.test_contract import redis_prefix
from tests.web._web import AUTH, USER, client_for, login, robot_form, robot_group, web_config, web_settings


@pytest.fixture
def replicas() -> Iterator[tuple[TestClient, TestClient]]:
    prefix = redis_prefix()
    data = web_config(REDIS_URL)
    web = data["web"] | {"session_secret": "shared-by-every-replica-0123456789"}
    store = data["store"] | {"prefix": prefix}
    settings = web_settings(REDIS_URL, store=store, web=web)
    with client_for(settings) as a, client_for(settings) as b:
        yield a, b
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def code(client: TestClient, id: str, level: str) -> int:
    reply = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm(id=id, level=level))))
    value: int = reply.json()["code"]
    return value


def test_a_group_saved_on_one_replica_is_used_by_every_replica_at_once(replicas: tuple[TestClient, ...]) -> None:
    a, b = replicas
    assert code(a, "ops", "1") == code(b, "ops", "1") == 3001
    assert a.post("/api/v1/groups", json=robot_group(), headers=AUTH).status_code == 201
    assert code(b, "ops", "1") == 0  # the other replica, the very next request
    assert code(a, "ops", "1") == 1010  # and the dedup window is shared too

    csrf = login(b)
    assert b.post("/ui/groups/new", data=robot_form(csrf, id="page", level="7")).status_code == 303
    assert code(a, "page", "7") == 0
    assert a.get("/api/v1/groups/page/7", headers=AUTH).json()["name"] == "运维组"
    assert b.delete("/api/v1/groups/ops/1", headers=AUTH).status_code == 204
    assert code(a, "ops", "1") == 3001


def test_a_session_and_the_audit_log_are_shared(replicas: tuple[TestClient, ...]) -> None:
    a, b = replicas
    csrf = login(a)
    session = str(a.cookies.get("alarm_bridge_session"))
    b.cookies.set("alarm_bridge_session", session, path="/ui")  # the load balancer picks the other replica
    assert b.get("/ui/groups").status_code == 200
    assert b.post("/ui/groups/new", data=robot_form(csrf)).status_code == 303
    entries = a.get("/api/v1/audit", headers=AUTH).json()["entries"]
    assert [(e["who"], e["action"]) for e in entries] == [(USER, "group.create"), (USER, "login")]
    assert b.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    a.cookies.set("alarm_bridge_session", session, path="/ui")
    assert a.get("/ui/groups").status_code == 303  # logged out everywhere
