"""The JSON API: groups CRUD with write-only secrets, validation by field, test alarms, and its OpenAPI document."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Scope

from bridge.web import api
from tests.channels._shared import assert_no_secret
from tests.helpers import TEMPLATES, seed_alarm, signed
from tests.web._web import AUTH, ROBOT_SECRET, SECRETS, WEBHOOK, robot_group, sqlite_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with sqlite_client(tmp_path) as c:
        yield c


def stored_target(client: TestClient, index: int = 0) -> Any:
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    group = client.portal.call(store.get_group, "ops", "1")  # type: ignore[union-attr]
    return group.targets[index]


def test_create_read_list_delete(client: TestClient) -> None:
    created = client.post("/api/v1/groups", json=robot_group(), headers=AUTH)
    assert created.status_code == 201
    body = created.json()
    assert body["channels"][0] == {
        "type": "dingtalk-robot",
        "webhook": "https://oapi.dingtalk.com/robot/send?access_token=****",
        "secret": "SEC****",
        "keyword": "",
    }
    assert body["source"] == "store" and body["provisioned"] is False
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).json() == body
    listed = client.get("/api/v1/groups", headers=AUTH).json()["groups"]
    assert [(g["id"], g["provisioned"]) for g in listed] == [("chenmin", True), ("ops", False)]
    assert [g["id"] for g in client.get("/api/v1/groups?q=王伟", headers=AUTH).json()["groups"]] == ["ops"]
    assert client.post("/api/v1/groups", json=robot_group(), headers=AUTH).status_code == 409
    assert client.delete("/api/v1/groups/ops/1", headers=AUTH).status_code == 204
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).status_code == 404
    assert client.delete("/api/v1/groups/ops/1", headers=AUTH).status_code == 404
    assert_no_secret(SECRETS, created.text, json.dumps(listed))


def test_of_creates_of_one_group_at_once_one_gets_201_and_the_others_409(client: TestClient) -> None:
    def create(n: int) -> int:
        return client.post("/api/v1/groups", json=robot_group(name=f"create {n}"), headers=AUTH).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(create, range(8)))
    assert sorted(codes) == [201] + [409] * 7, codes
    stored = client.get("/api/v1/groups/ops/1", headers=AUTH).json()
    assert stored["name"] == f"create {codes.index(201)}"
    entries = client.get("/api/v1/audit", headers=AUTH).json()["entries"]
    assert [e["action"] for e in entries] == ["group.create"]


def test_env_references_in_a_group_are_kept_as_text_not_read_from_the_servers_environment(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "must-not-leak")
    name = "${SERVER_SECRET} ${NOT_SET:-${ALSO_NOT_SET}}"
    created = client.post("/api/v1/groups", json=robot_group(name=name), headers=AUTH)
    assert created.status_code == 201 and created.json()["name"] == name
    listed = client.get("/api/v1/groups", headers=AUTH).json()["groups"]
    assert [g["name"] for g in listed if g["id"] == "ops"] == [name]  # read back from the store as well
    assert "must-not-leak" not in client.get("/ui/groups").text + client.get("/api/v1/groups/ops/1", headers=AUTH).text


def test_a_webhook_key_in_a_bare_query_item_is_masked_too(client: TestClient) -> None:
    webhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?SECRETKEY123"
    created = client.post("/api/v1/groups", json=robot_group(channels=[{"type": "wecom-robot", "webhook": webhook}]),
                          headers=AUTH)  # fmt: skip
    assert created.status_code == 201
    assert created.json()["channels"][0]["webhook"] == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?****"
    assert "SECRETKEY123" not in client.get("/api/v1/groups/ops/1", headers=AUTH).text


def test_put_keeps_masked_and_missing_secrets_and_an_empty_secret_clears_it(client: TestClient) -> None:
    client.post("/api/v1/groups", json=robot_group(), headers=AUTH)
    read_back = client.get("/api/v1/groups/ops/1", headers=AUTH).json()
    assert client.put("/api/v1/groups/ops/1", json=read_back | {"name": "改"}, headers=AUTH).status_code == 200
    assert stored_target(client).webhook == WEBHOOK and stored_target(client).secret == ROBOT_SECRET
    without = read_back | {"channels": [{"type": "dingtalk-robot"}, {"type": "email"}]}
    client.put("/api/v1/groups/ops/1", json=without, headers=AUTH)
    assert stored_target(client).webhook == WEBHOOK and stored_target(client).secret == ROBOT_SECRET
    cleared = read_back | {"channels": [{"type": "dingtalk-robot", "secret": ""}]}
    client.put("/api/v1/groups/ops/1", json=cleared, headers=AUTH)
    assert stored_target(client).webhook == WEBHOOK and stored_target(client).secret == ""


def test_a_masked_webhook_for_a_new_channel_is_refused(client: TestClient) -> None:
    client.post("/api/v1/groups", json=robot_group(), headers=AUTH)
    moved = robot_group(channels=[{"type": "email"}, {"type": "wecom-robot", "webhook": "https://x/send?key=****"}])
    reply = client.put("/api/v1/groups/ops/1", json=moved, headers=AUTH)
    assert reply.status_code == 422
    assert reply.json()["fields"] == {
        "channels[1].webhook": "is masked, and there is none to keep here: enter the whole value"
    }


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"members": [{"mail": "a@b.c"}]}, {"members[0].name": "is required"}),
        ({"members": [{"name": "x", "phone": "1"}]}, {"members[0].phone": "unknown key"}),
        ({"channels": [{"type": "pager"}]}, {"channels[0].type": "expected one of"}),
        ({"channels": [{"type": "wecom-app", "app": "nope"}]}, {"channels[0].app": "no app 'nope' under wecom.apps"}),
        ({"format": "html"}, {"format": "expected one of text, markdown"}),
        ({"templates": {"native/nope.j2": "x"}}, {"templates.native/nope.j2": "no template"}),
        ({"templates": {"native/text.j2": "{{ x"}}, {"templates.native/text.j2": "line 1"}),
        ({"colour": "red"}, {"colour": "unknown key"}),
        ({"id": ""}, {"id": "is required"}),
        ({"id": ".."}, {"id": "nor be . or .."}),  # a page path that clients normalize away
        ({"dedup_window": 1e20}, {"dedup_window": "at most a year"}),
        ({"dedup_window": "9" * 400 + "h"}, {"dedup_window": "at most a year"}),
        (
            {
                "channels": [
                    {"type": "dingtalk-robot", "webhook": "https://[oapi.dingtalk.com/robot/send?access_token=x"}
                ]
            },
            {"channels[0].webhook": "http(s) URL"},
        ),
        (
            {"channels": [{"type": "wecom-robot", "webhook": "https://x y/cgi-bin/webhook/send?key=k"}]},
            {"channels[0].webhook": "http(s) URL"},
        ),
    ],
)
def test_invalid_groups_get_422_naming_each_field(
    client: TestClient, changes: dict[str, Any], fields: dict[str, str]
) -> None:
    reply = client.post("/api/v1/groups", json=robot_group(**changes), headers=AUTH)
    assert reply.status_code == 422
    found = reply.json()["fields"]
    assert set(found) == set(fields), found
    assert all(fields[k] in found[k] for k in fields), found
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).status_code == 404


def test_malformed_bodies(client: TestClient) -> None:
    post = client.post
    infinite = json.dumps(robot_group(dedup_window=float("inf"))).encode()  # Python's JSON reads Infinity
    assert post("/api/v1/groups", content=infinite, headers=AUTH).status_code == 422
    assert post("/api/v1/groups", content=b"{", headers=AUTH).status_code == 400
    assert post("/api/v1/groups", content=b"[" * 50_000, headers=AUTH).status_code == 400  # too deep to parse
    lone_surrogate = json.dumps(robot_group(name="ops \ud800")).encode()  # half of a UTF-16 pair: no text to store
    assert post("/api/v1/groups", content=lone_surrogate, headers=AUTH).status_code == 400
    assert post("/api/v1/groups", content=b"[]", headers=AUTH).status_code == 422
    assert post("/api/v1/groups", content=b" " * (1024 * 1024 + 1), headers=AUTH).status_code == 413
    reply = client.put("/api/v1/groups/ops/1", json=robot_group(id="other"), headers=AUTH)
    assert reply.status_code == 422 and "id" in reply.json()["fields"]


def test_a_group_needs_a_body(client: TestClient) -> None:
    for send in (client.post, client.put):
        reply = send("/api/v1/groups" if send == client.post else "/api/v1/groups/ops/1", headers=AUTH)
        assert reply.status_code == 400 and reply.json() == {"error": "a JSON body is required"}
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).status_code == 404


def test_another_method_is_refused_with_every_allowed_one(client: TestClient) -> None:
    for path, allowed in (
        ("/api/v1/groups", {"GET", "HEAD", "POST"}),
        ("/api/v1/groups/ops/1", {"GET", "HEAD", "PUT", "DELETE"}),
    ):
        reply = client.request("PATCH", path, headers=AUTH)
        assert reply.status_code == 405
        assert {m.strip() for m in reply.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize("query", ["alarms?limit=²", "alarms?code=¹", "audit?limit=³", "audit?before=-1"])
def test_numbers_that_are_not_whole_get_400(client: TestClient, query: str) -> None:
    assert client.get(f"/api/v1/{query}", headers=AUTH).status_code == 400


def test_put_creates_and_provisioned_groups_are_read_only(client: TestClient) -> None:
    assert client.put("/api/v1/groups/ops/1", json=robot_group(), headers=AUTH).status_code == 201
    assert client.put("/api/v1/groups/ops/1", json=robot_group(), headers=AUTH).status_code == 200
    seed = client.get("/api/v1/groups/chenmin/3", headers=AUTH).json()
    assert seed["provisioned"] is True and seed["source"] == "test.yaml (groups[0])"
    assert client.put("/api/v1/groups/chenmin/3", json=seed, headers=AUTH).status_code == 403
    assert client.delete("/api/v1/groups/chenmin/3", headers=AUTH).status_code == 403


def test_a_group_from_the_api_is_used_by_alarm_v2_at_once_and_tested(client: TestClient) -> None:
    alarm = json.dumps(signed(seed_alarm(id="ops", level="1")))
    assert client.post("/alarm_v2", content=alarm).json()["code"] == 3001
    client.post("/api/v1/groups", json=robot_group(), headers=AUTH)
    assert client.post("/alarm_v2", content=alarm).json() == {"code": 0}
    reply = client.post("/api/v1/groups/ops/1/test", json={"alert_level": "高"}, headers=AUTH)
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 0 and [d["target"] for d in body["deliveries"]] == ["dingtalk-robot …7b3d", "email"]
    assert all(d["state"] == "done" and d["code"] == 0 for d in body["deliveries"])
    bad = client.post("/api/v1/groups/ops/1/test", json={"alert_level": "urgent"}, headers=AUTH)
    assert bad.status_code == 422
    alarms = client.get("/api/v1/alarms?group=ops/1", headers=AUTH).json()["alarms"]
    assert [a["alarm"]["alert_level"] for a in alarms] == ["高", "高"]
    assert alarms[0]["group"] == {"id": "ops", "level": "1", "name": "运维组"}


def test_preview(client: TestClient) -> None:
    reply = client.get("/api/v1/preview?group=chenmin/3&channel=wecom&sample=low", headers=AUTH).json()
    assert reply["message"]["title"] == "【低】静态资源" and reply["errors"] == []
    assert client.get("/api/v1/preview?group=x/1", headers=AUTH).status_code == 404
    assert client.get("/api/v1/preview?group=chenmin/3&channel=fax", headers=AUTH).status_code == 400


def test_preview_names_a_shipped_template_that_fails(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "native" / "title.j2").write_text("{{ alarm.no_such_field }}", encoding="utf-8")
    with sqlite_client(tmp_path, templates=str(tmp_path / "templates")) as client:
        reply = client.get("/api/v1/preview?group=chenmin/3&channel=wecom", headers=AUTH)
    assert reply.status_code == 200 and reply.json()["message"] is None
    (error,) = reply.json()["errors"]
    assert "template native/title.j2 failed" in error and "no_such_field" in error


def test_preview_shows_the_loaded_templates_which_delivery_uses_until_a_reload(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    with sqlite_client(tmp_path, templates=str(tmp_path / "templates")) as client:
        (tmp_path / "templates" / "native" / "title.j2").write_text("edited", encoding="utf-8")
        reply = client.get("/api/v1/preview?group=chenmin/3&channel=wecom&sample=low", headers=AUTH).json()
    assert reply["message"]["title"] == "【低】静态资源"


@pytest.mark.parametrize("path", ["/alarm_v2", "/api/v1/groups"])
def test_a_client_gone_before_its_body_is_not_an_error(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in {**AUTH, "Content-Length": "100"}.items()]
    scope: Scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_openapi_document_describes_exactly_the_routes(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json", headers=AUTH).json()
    assert document["openapi"].startswith("3.1") and document["servers"] == [{"url": "/api/v1"}]
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    real = set()
    for route in api.routes:
        assert isinstance(route, Route)
        real |= {(m, route.path.removeprefix("/api/v1")) for m in route.methods or () if m != "HEAD"}
    assert described == real
    for item in document["paths"].values():
        for operation in (v for k, v in item.items() if k != "parameters"):
            assert "401" in operation["responses"] and operation["operationId"]
    schemas = document["components"]["schemas"]
    refs = {r for r in json.dumps(document).split('"$ref": "#/components/schemas/')[1:]}
    assert {r.split('"')[0] for r in refs} <= set(schemas)


def test_a_feishu_bots_hook_token_and_secret_are_write_only(client: TestClient) -> None:
    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/0f3c-hook-token-feishu"
    bot = {"type": "feishu-robot", "webhook": hook, "secret": "feishu-sign-secret-9", "keyword": "告警"}
    created = client.post("/api/v1/groups", json=robot_group(channels=[bot]), headers=AUTH)
    assert created.status_code == 201
    shown = created.json()["channels"][0]
    assert shown == {"type": "feishu-robot", "webhook": "https://open.feishu.cn/open-apis/bot/v2/hook/****",
                     "secret": "****", "keyword": "告警"}  # fmt: skip
    assert client.put("/api/v1/groups/ops/1", json=created.json() | {"name": "改"}, headers=AUTH).status_code == 200
    assert stored_target(client).webhook == hook and stored_target(client).secret == "feishu-sign-secret-9"
    pages = [client.get(path, headers=AUTH).text for path in ("/api/v1/groups/ops/1", "/api/v1/audit")]
    assert_no_secret(["0f3c-hook-token-feishu", "feishu-sign-secret-9"], created.text, *pages)
    missing = robot_group(channels=[{"type": "feishu-app", "app": "ops"}])
    reply = client.post("/api/v1/groups", json=missing | {"level": "2"}, headers=AUTH)
    assert reply.status_code == 422 and "channels[0].chat_id" in reply.json()["fields"]
