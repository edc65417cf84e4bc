"""Recent alarms, dead letters and retries, and members DingTalk rejects: against the fake DingTalk, over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from bridge.store import Admission, Job, State
from tests.channels._shared import assert_no_secret
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.web._web import AUTH, ROBOT_SECRET, SECRETS, client_for, login, text_of, web_settings

APP_KEY, APP_SECRET = "dingappkey", "ding-app-secret-3c1f"
ROBOT_TOKEN = "fake-robot-token-8d2e"


@dataclass
class World:
    client: TestClient
    dingtalk: DingTalkFake
    webhook: str
    csrf: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    dingtalk = DingTalkFake()
    dingtalk.add_app(APP_KEY, APP_SECRET)
    dingtalk.add_user("chenmin", "wangwei")
    with FakeServer(dingtalk.app()) as server:
        settings = web_settings(
            f"sqlite:///{tmp_path / 's.db'}",
            delivery={"timeout": "2s", "deadline": "3s", "reply_wait": "10s", "backoff": "1h", "poll": "100ms"},
            dingtalk={"base_url": server.url, "apps": {"corp": {"appkey": APP_KEY, "appsecret": APP_SECRET}}},
        )
        with client_for(settings) as client:
            yield World(client, dingtalk, f"{server.url}/robot/send?access_token={ROBOT_TOKEN}", login(client))


def create(world: World, **changes: Any) -> None:
    group = {
        "id": "data",
        "level": "2",
        "name": "数据组",
        "members": [
            {"name": "陈敏", "dingtalk_userid": "chenmin"},
            {"name": "离职者", "dingtalk_userid": "leaver"},
            {"name": "王伟", "dingtalk_userid": "wangwei"},
        ],
        "channels": [
            {"type": "dingtalk-robot", "webhook": world.webhook, "secret": ROBOT_SECRET},
            {"type": "dingtalk-app", "app": "corp"},
        ],
    } | changes
    assert world.client.post("/api/v1/groups", json=group, headers=AUTH).status_code == 201


def send_test(world: World) -> dict[str, Any]:
    reply = world.client.post("/api/v1/groups/data/2/test", json={"alert_business": "上线检查"}, headers=AUTH)
    assert reply.status_code == 200
    result: dict[str, Any] = reply.json()
    return result


def test_a_dead_delivery_is_shown_and_retried(world: World) -> None:
    create(world, channels=[{"type": "dingtalk-robot", "webhook": world.webhook, "secret": ROBOT_SECRET}])
    result = send_test(world)  # the fake does not know the robot yet: refused, not worth retrying
    assert result["code"] == 4002
    (delivery,) = result["deliveries"]
    assert delivery["state"] == "dead" and delivery["code"] == 4002 and "300001" in delivery["detail"]
    page = world.client.get("/ui/alarms?state=dead")
    text = text_of(page.text)
    assert f"dead dingtalk-robot …{ROBOT_TOKEN[-4:]} code 4002" in text and "上线检查" in text
    action = re.search(r'action="(/ui/deliveries/[^"]+/retry)"', page.text)
    assert action is not None
    world.dingtalk.add_robot(ROBOT_TOKEN, ROBOT_SECRET)
    retried = world.client.post(action[1], data={"csrf": world.csrf})
    assert retried.status_code == 303 and retried.headers["location"] == "/ui/alarms?notice=retrying"
    deadline = time.monotonic() + 10
    while not world.dingtalk.robot_messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "上线检查" in world.dingtalk.robot_messages[0].content
    while time.monotonic() < deadline:
        alarms = world.client.get("/api/v1/alarms?group=data/2", headers=AUTH).json()["alarms"]
        if alarms[0]["deliveries"][0]["state"] == "done":
            break
        time.sleep(0.05)
    assert alarms[0]["state"] == "done" and alarms[0]["deliveries"][0]["code"] == 0
    assert world.client.post(action[1], data={"csrf": world.csrf}).status_code == 409  # no longer dead
    audit = world.client.get("/api/v1/audit", headers=AUTH).json()["entries"]
    assert audit[0]["action"] == "delivery.retry" and audit[0]["who"] == "alice"


def test_a_job_that_cannot_be_read_is_listed_and_breaks_no_page(world: World) -> None:
    create(world)
    damaged = Job(id="damaged:5", payload='{"target": 5, "group": {"channels": []}}', created=time.time(),
                  state=State.DEAD, attempts=1, detail="cannot be read: IndexError(...)")  # fmt: skip
    store = world.client.app.state.gateway.store  # type: ignore[attr-defined]
    assert world.client.portal is not None
    world.client.portal.call(store.admit, [Admission([damaged])], 0.0)
    world.client.portal.call(store.settle, [damaged])
    assert len(send_test(world)["deliveries"]) == 2  # a test alarm still finds its own deliveries among the jobs
    (listed,) = [a for a in world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"] if a["id"] == "damaged"]
    assert listed["deliveries"][0]["target"] == "unreadable" and "cannot be read" in listed["deliveries"][0]["detail"]
    for page in ("/ui/alarms", "/ui/alarms?state=dead", "/ui/groups/data/2", "/ui/groups"):
        assert world.client.get(page).status_code == 200, page


def test_recent_alarms_filter_by_group_code_state_and_time(world: World) -> None:
    world.dingtalk.add_robot(ROBOT_TOKEN, ROBOT_SECRET)
    create(world)
    world.dingtalk.remove_user("chenmin", "wangwei")
    assert send_test(world)["code"] == 4001  # the robot delivers; the app's chat has no member left to make it with
    world.client.post("/api/v1/groups", json={"id": "other", "level": "1", "channels": []}, headers=AUTH)

    def shown(query: str) -> list[str]:
        page = world.client.get(f"/ui/alarms?{query}").text
        return re.findall(r'<a href="/ui/groups/[^"]+">([^<]+)</a>', page)

    assert shown("") == ["data/2"]
    assert shown("group=data") == shown("group=data/2") == ["data/2"]
    assert shown("group=other") == [] and shown("group=data/3") == []
    assert shown("code=4001") == shown("code=0") == ["data/2"]
    assert shown("code=4005") == []
    assert shown("state=dead") == shown("state=done") == ["data/2"]
    assert shown("state=pending") == []
    zone = ZoneInfo("Asia/Shanghai")
    minute = datetime.fromtimestamp(time.time(), zone).strftime("%Y-%m-%dT%H:%M")
    later = datetime.fromtimestamp(time.time() + 120, zone).strftime("%Y-%m-%dT%H:%M")
    assert shown(f"since={minute}") == ["data/2"] and shown(f"since={later}") == []
    assert shown(f"until={later}") == ["data/2"]
    assert "times are written" in world.client.get("/ui/alarms?since=yesterday").text
    api = world.client.get("/api/v1/alarms?code=4001&since=0", headers=AUTH).json()["alarms"]
    assert [d["code"] for d in api[0]["deliveries"]] == [0, 4001]
    assert world.client.get("/api/v1/alarms?code=x", headers=AUTH).status_code == 400


def test_a_member_dingtalk_rejects_is_left_out_of_the_chat_flagged_and_correcting_the_group_keeps_the_chat(
    world: World,
) -> None:
    create(world, channels=[{"type": "dingtalk-app", "app": "corp"}])
    assert send_test(world)["code"] == 0  # the others get it
    (chat,) = world.dingtalk.chats.values()
    assert sorted(chat.useridlist) == ["chenmin", "wangwei"] and len(chat.messages) == 1
    page = world.client.get("/ui/groups/data/2")
    text = text_of(page.text)
    assert "DingTalk or WeCom rejected 1 member user id" in text
    assert re.search(r"leaver : dingtalk-app corp rejected it at \d{4}-\d\d-\d\d", text)
    flagged = re.findall(r'<tr class="flagged"[^>]*>.*?name="members-(\d)-name" value="([^"]*)"', page.text, re.DOTALL)
    assert flagged == [("1", "离职者")]
    group = world.client.get("/api/v1/groups/data/2", headers=AUTH).json()
    group["members"] = [m for m in group["members"] if m["dingtalk_userid"] != "leaver"]
    assert world.client.put("/api/v1/groups/data/2", json=group, headers=AUTH).status_code == 200
    assert send_test(world)["code"] == 0
    assert list(world.dingtalk.chats.values()) == [chat] and len(chat.messages) == 2
    assert "rejected" not in text_of(world.client.get("/ui/groups/data/2").text)


def test_no_page_or_api_reply_shows_a_secret(world: World) -> None:
    world.dingtalk.add_robot(ROBOT_TOKEN, ROBOT_SECRET)
    create(world)
    send_test(world)
    client = world.client
    secrets = [*SECRETS, ROBOT_TOKEN, APP_SECRET]
    pages = ["/ui/groups", "/ui/groups/data/2", "/ui/groups/new", "/ui/preview?group=data/2", "/ui/alarms",
             "/ui/audit", "/ui/groups/chenmin/3"]  # fmt: skip
    texts = [client.get(p).text for p in pages]
    texts.append(client.post("/ui/groups/data/2/test", data={"csrf": world.csrf}).text)
    api = ["/api/v1/groups", "/api/v1/groups/data/2", "/api/v1/alarms", "/api/v1/audit", "/api/v1/openapi.json",
           "/api/v1/preview?group=data/2"]  # fmt: skip
    texts += [client.get(p, headers=AUTH).text for p in api]
    texts.append(client.post("/api/v1/groups/data/2/test", headers=AUTH).text)
    assert all(texts)
    assert_no_secret(secrets, *texts)
    assert "access_token=****" in client.get("/api/v1/groups/data/2", headers=AUTH).text
