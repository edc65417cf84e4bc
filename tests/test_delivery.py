"""End to end through /alarm_v2: every channel of a group, each failing on its own, and a hanging upstream."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import parse
from bridge.store import Job, State, open_store
from bridge.web import activity
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.smtp import Recorder, smtp_server
from tests.fakes.wecom import WeComFake
from tests.helpers import TEMPLATES, config_data, seed_alarm, signed

ROBOT_TOKEN, ROBOT_SECRET = "robot-token-0123456789", "SEC0123456789abcdef"
APP_KEY, APP_SECRET = "dingappkey", "ding-app-secret-xyz"
CORP_ID, CORP_SECRET, AGENT_ID = "wwcorp", "wecom-corp-secret-xyz", 1000002
ROBOT_KEY = "wecom-robot-key-0123456789"
MEMBERS = [
    {"name": "陈敏", "mail": "chenmin@example.com", "mobile": "13800000000", "dingtalk_userid": "chenmin",
     "wecom_userid": "chenmin"},
    {"name": "王伟", "mail": "wangwei@example.com", "mobile": "13900000000", "dingtalk_userid": "wangwei",
     "wecom_userid": "wangwei"},
]  # fmt: skip


@dataclass
class Upstreams:
    dingtalk: DingTalkFake
    wecom: WeComFake
    smtp: Recorder
    config: dict[str, Any]

    def received(self) -> dict[str, int]:
        return {
            "dingtalk-robot": len(self.dingtalk.robot_messages),
            "dingtalk-app": sum(len(c.messages) for c in self.dingtalk.chats.values()),
            "wecom-app": len(self.wecom.app_messages),
            "wecom-appchat": sum(len(c.messages) for c in self.wecom.chats.values()),
            "wecom-robot": len(self.wecom.robot_messages),
            "email": len(self.smtp.received),
        }


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[Upstreams]:
    dingtalk, wecom, smtp = DingTalkFake(), WeComFake(), Recorder()
    dingtalk.add_robot(ROBOT_TOKEN, ROBOT_SECRET)
    dingtalk.add_app(APP_KEY, APP_SECRET)
    wecom.add_app(CORP_ID, CORP_SECRET, AGENT_ID)
    wecom.add_robot(ROBOT_KEY)
    for fake in (dingtalk, wecom):
        fake.add_user("chenmin", "wangwei")
    with FakeServer(dingtalk.app()) as dt, FakeServer(wecom.app()) as wc, smtp_server(smtp) as smtp_port:
        group = {
            "id": "chenmin",
            "level": "3",
            "name": "数据组",
            "members": MEMBERS,
            "channels": [
                {"type": "dingtalk-robot", "webhook": f"{dt.url}/robot/send?access_token={ROBOT_TOKEN}",
                 "secret": ROBOT_SECRET},
                {"type": "dingtalk-app", "app": "corp"},
                {"type": "wecom-app", "app": "corp"},
                {"type": "wecom-appchat", "app": "corp"},
                {"type": "wecom-robot", "webhook": f"{wc.url}/cgi-bin/webhook/send?key={ROBOT_KEY}"},
                {"type": "email"},
            ],
        }  # fmt: skip
        data = config_data(
            f"sqlite:///{tmp_path / 's.db'}",
            groups=[group],
            delivery={"timeout": "1s", "deadline": "2s", "reply_wait": "10s", "backoff": "1h"},
            dingtalk={"base_url": dt.url, "apps": {"corp": {"appkey": APP_KEY, "appsecret": APP_SECRET}}},
            wecom={"base_url": wc.url, "apps": {"corp": {"corpid": CORP_ID, "corpsecret": CORP_SECRET,
                                                          "agentid": AGENT_ID}}},
            email={"host": "127.0.0.1", "port": smtp_port, "security": "plain", "sender": "告警 <alarm@example.com>"},
        )  # fmt: skip
        yield Upstreams(dingtalk, wecom, smtp, data)


def post(upstreams: Upstreams, **changes: str) -> dict[str, Any]:
    with TestClient(create_app(parse(upstreams.config, "test.yaml"))) as client:
        response = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm(**changes))))
        reply: dict[str, Any] = response.json()
        return reply


def test_one_alarm_reaches_every_channel_exactly_once(upstreams: Upstreams) -> None:
    assert post(upstreams) == {"code": 0}
    assert upstreams.received() == dict.fromkeys(upstreams.received(), 1)
    robot = upstreams.dingtalk.robot_messages[0].body
    assert robot["msgtype"] == "text"
    assert robot["text"]["content"].startswith("部门:du-srv\n环境:prod\n告警业务:陈敏测试alert_business")
    (chat,) = upstreams.dingtalk.chats.values()
    assert sorted(chat.useridlist) == ["chenmin", "wangwei"]
    assert "告警业务:陈敏测试alert_business" in chat.messages[0].msg["text"]["content"]
    assert sorted(upstreams.wecom.app_messages[0].delivered) == ["chenmin", "wangwei"]
    assert "异常说明:陈敏测试之异常说明" in upstreams.wecom.robot_messages[0].content
    mail = upstreams.smtp.received[0].message()
    assert mail["Subject"] == "【高】陈敏测试alert_business"
    assert sorted(upstreams.smtp.received[0].rcpt_tos) == ["chenmin@example.com", "wangwei@example.com"]


def test_markdown_groups_get_markdown_where_the_channel_has_it(upstreams: Upstreams) -> None:
    upstreams.config["groups"][0]["format"] = "markdown"
    assert post(upstreams) == {"code": 0}
    robot = upstreams.dingtalk.robot_messages[0].body
    assert robot["msgtype"] == "markdown"
    assert robot["markdown"]["title"] == "【高】陈敏测试alert_business"
    assert "**异常说明**: 陈敏测试之异常说明" in robot["markdown"]["text"]
    assert upstreams.wecom.robot_messages[0].msgtype == "markdown"
    assert upstreams.wecom.app_messages[0].msgtype == "markdown"


@pytest.mark.parametrize(
    ("break_it", "code", "failed"),
    [
        (lambda u: u.dingtalk.add_robot(ROBOT_TOKEN, "SECanother-secret"), 4002, "dingtalk-robot"),
        (lambda u: u.config["dingtalk"]["apps"]["corp"].update(appsecret="wrong"), 4000, "dingtalk-app"),
        (lambda u: u.dingtalk.remove_user("chenmin", "wangwei"), 4001, "dingtalk-app"),  # no member left for a chat
        (lambda u: u.config["wecom"]["apps"]["corp"].update(corpsecret="wrong"), 4003, "wecom-app wecom-appchat"),
        (lambda u: u.wecom.remove_robot(ROBOT_KEY), 4004, "wecom-robot"),
        (lambda u: u.smtp.refuse.update({"chenmin@example.com": "550 no", "wangwei@example.com": "550 no"}), 4005,
         "email"),
    ],
)  # fmt: skip
def test_one_failing_channel_gives_its_code_and_the_others_still_deliver(
    upstreams: Upstreams, break_it: Any, code: int, failed: str
) -> None:
    break_it(upstreams)
    reply = post(upstreams)
    assert reply["code"] == code
    assert all(kind in reply["msg"] for kind in failed.split())
    received = upstreams.received()
    assert all(n == 1 for kind, n in received.items() if kind not in failed.split()), received
    if code == 4001:
        assert "chenmin, wangwei" in reply["msg"]  # the members who left are named
    for secret in (ROBOT_TOKEN, ROBOT_SECRET, APP_SECRET, CORP_SECRET, ROBOT_KEY):
        assert secret not in reply["msg"]


def test_the_first_failed_channel_in_dingtalk_wecom_email_order_gives_the_code(upstreams: Upstreams) -> None:
    upstreams.smtp.refuse.update({"chenmin@example.com": "550 no", "wangwei@example.com": "550 no"})
    upstreams.wecom.remove_robot(ROBOT_KEY)
    reply = post(upstreams)
    assert reply["code"] == 4004
    assert "wecom-robot" in reply["msg"] and "email" in reply["msg"]


def test_a_shipped_template_that_fails_is_the_outcome_and_nothing_half_made_is_sent(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "native" / "text.j2").write_text("{{ alarm.no_such_field }}", encoding="utf-8")
    upstreams.config["templates"] = str(tmp_path / "templates")
    reply = post(upstreams)
    assert reply["code"] == 4002  # every channel renders text.j2: DingTalk's code comes first
    assert "template native/text.j2 failed" in reply["msg"] and "no_such_field" in reply["msg"]
    assert "retrying" not in reply["msg"]  # only fixing the template helps; then the dead deliveries are retried
    assert upstreams.received() == dict.fromkeys(upstreams.received(), 0)
    assert len(asyncio.run(stored_jobs(upstreams, State.DEAD))) == 6


async def stored_jobs(upstreams: Upstreams, state: State | None = None) -> list[Job]:
    store = open_store(parse(upstreams.config, "test.yaml").store)
    try:
        return list(await store.jobs(state, 100))
    finally:
        await store.close()


def test_a_hanging_upstream_does_not_hold_back_the_others(upstreams: Upstreams) -> None:
    upstreams.dingtalk.hang(30)
    try:
        reply = post(upstreams)
    finally:
        upstreams.dingtalk.unhang()
    assert reply["code"] == 4000 or reply["code"] == 4002  # the token call or the robot hung first
    assert "retrying" in reply["msg"]
    received = upstreams.received()
    assert {k: received[k] for k in ("wecom-app", "wecom-appchat", "wecom-robot", "email")} == dict.fromkeys(
        ("wecom-app", "wecom-appchat", "wecom-robot", "email"), 1
    )
    assert received["dingtalk-robot"] == 0


def test_a_recipient_refused_for_now_gets_the_mail_later_and_the_others_only_once(upstreams: Upstreams) -> None:
    upstreams.config["groups"][0]["channels"] = [{"type": "email", "to": ["ops@example.com"]}]
    upstreams.config["delivery"] |= {"backoff": "200ms", "poll": "50ms"}
    upstreams.smtp.refuse["wangwei@example.com"] = "450 4.7.1 greylisted, try again later"
    with TestClient(create_app(parse(upstreams.config, "test.yaml"))) as client:
        reply = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm()))).json()
        assert reply == {"code": 0}  # delivered: the server took two of the three recipients
        upstreams.smtp.refuse.clear()  # the greylisting passes
        deadline = time.monotonic() + 30
        while len(upstreams.smtp.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more arrives
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        assert client.portal is not None
        jobs = client.portal.call(store.jobs, None, 10)
    first, again = upstreams.smtp.received
    assert sorted(first.rcpt_tos) == ["chenmin@example.com", "ops@example.com"]
    assert again.rcpt_tos == ["wangwei@example.com"]
    assert again.message()["Subject"] == first.message()["Subject"]
    bodies = [mail.message().get_body(("plain",)) for mail in (first, again)]
    assert bodies[0] is not None and bodies[1] is not None and bodies[0].get_content() == bodies[1].get_content()
    (record,) = activity.records(jobs)  # one alarm, its mail listed twice: to everyone, then to the one refused
    assert [(d.job.rpartition(":")[2], d.state) for d in record.deliveries] == [("0", State.DONE), ("0+1", State.DONE)]


def test_a_message_cut_short_with_split_off_says_so_in_its_delivery_and_is_counted(
    upstreams: Upstreams,
) -> None:
    upstreams.config["delivery"]["split"] = False
    before = REGISTRY.get_sample_value("alarm_bridge_messages_truncated_total", {"channel": "dingtalk"}) or 0
    assert post(upstreams, exception_spec="磁盘满了\n" * 1500) == {"code": 0}
    assert upstreams.received() == dict.fromkeys(upstreams.received(), 1)  # one message each, none split
    after = REGISTRY.get_sample_value("alarm_bridge_messages_truncated_total", {"channel": "dingtalk"})
    assert after == before + 2  # the robot and the app chat
    jobs = asyncio.run(stored_jobs(upstreams))
    robot = next(j for j in jobs if activity.read(j).target.startswith("dingtalk-robot"))
    assert robot.detail == "cut short to one message (delivery.split is off)"
