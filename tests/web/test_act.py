"""Action links from a real message (through the fake DingTalk robot): the confirmation page, mutes, acknowledge."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge import actions
from bridge.actions import Kind, Link
from bridge.config import Settings
from bridge.config_file import parse
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import REDIS_URL, free_port, seed_alarm, signed
from tests.ingest.test_alertmanager import payload
from tests.store.test_contract import redis_prefix
from tests.test_outbox import wait_until
from tests.web._web import AUTH, USER, client_for, csrf_of, login, text_of, web_config

KEY = "action-key-0123456789abcdef"
ROBOT = "act-robot-token"


@dataclass
class World:
    client: TestClient
    robot: DingTalkFake
    settings: Settings

    def alarm(self, **changes: str) -> None:
        reply = self.client.post("/alarm_v2", json=signed(seed_alarm(**changes)))
        assert reply.json() == {"code": 0}

    def links(self, message: int) -> dict[str, str]:
        """The action links of the robot's ``message``-th message, by label, as paths on the gateway."""
        content = self.robot.robot_messages.wait_for(message + 1, timeout=10)[message].content
        return dict(re.findall(r"^(.+?): https://bridge\.example(/ui/act/\S+)$", content, re.MULTILINE))

    def mutes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client.get("/api/v1/mutes", headers=AUTH).json()["mutes"]
        return found


@contextmanager
def world_for(
    tmp_path: Path,
    store_url: str = "",
    top: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    **action_settings: Any,
) -> Iterator[World]:
    fake = DingTalkFake(robot_rate=1000)
    fake.add_robot(ROBOT)
    with FakeServer(fake.app()) as server:
        group = {"id": "chenmin", "level": "3", "channels": [
            {"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token={ROBOT}"}]}  # fmt: skip
        data = web_config(store_url or f"sqlite:///{tmp_path / 's.db'}", groups=[group],
                          delivery={"dry_run": False, "timeout": "2s", "deadline": "3s", "backoff": "1h",
                                    **(delivery or {})},
                          **(top or {}))  # fmt: skip
        data["web"] |= {"external_url": "https://bridge.example", "actions": {"key": KEY, **action_settings}}
        if store_url:
            data["store"]["prefix"] = redis_prefix()
        settings = parse(data, "test.yaml")
        with client_for(settings) as client:
            yield World(client, fake, settings)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with world_for(tmp_path) as found:
        yield found


def confirm(world: World, path: str) -> Any:
    page = world.client.get(path)
    assert page.status_code == 200, page.text
    return world.client.post(path, data={"csrf": csrf_of(page.text)})


def test_a_mute_link_holds_back_the_next_matching_alarm_and_nothing_else(world: World) -> None:
    world.alarm(alert_host="db1")
    link = world.links(0)["静默 1h"]
    assert "Mute alarms of group chenmin/3" in text_of(world.client.get(link).text)
    done = confirm(world, link)
    assert done.status_code == 200 and "Done: mute" in text_of(done.text)
    (mute,) = world.mutes()
    assert (mute["business"], mute["host"], mute["who"]) == ("陈敏测试alert_business", "db1", "chat link")
    notice = world.robot.robot_messages.wait_for(2, timeout=10)[1].content
    assert notice == "已静默 1h: 【高】陈敏测试alert_business @ db1 by chat link"

    world.alarm(alert_host="db1", exception_spec="again")  # the same alarm again: {"code": 0}, and not sent
    world.alarm(alert_host="db2")  # another host: sent
    third = world.robot.robot_messages.wait_for(3, timeout=10)[2].content
    assert "告警主机:db2" in third
    listed = world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"]
    states = {a["alarm"].get("exception_spec"): a["state"] for a in listed if a["alarm"].get("alert_host") == "db1"}
    assert states == {"again": "muted", "陈敏测试之异常说明": "done"}
    assert len(world.robot.robot_messages) == 3  # the muted alarm never reached the robot


def test_the_alarm_list_filters_muted_alarms_apart_from_delivered_ones(world: World) -> None:
    world.alarm(alert_host="db1")
    confirm(world, world.links(0)["静默 1h"])
    world.alarm(alert_host="db1", exception_spec="held back")
    world.alarm(alert_host="db2", exception_spec="sent")

    def listed(state: str) -> list[str]:
        reply = world.client.get("/api/v1/alarms", params={"state": state}, headers=AUTH)
        assert reply.status_code == 200, reply.text
        return sorted(a["alarm"]["exception_spec"] for a in reply.json()["alarms"] if "exception_spec" in a["alarm"])

    assert listed("muted") == ["held back"]
    assert listed("done") == ["sent", "陈敏测试之异常说明"]  # delivered: the muted one reached nobody
    login(world.client)
    page = text_of(world.client.get("/ui/alarms", params={"state": "muted"}).text)
    assert "held back" in page and "db2" not in page
    wrong = world.client.get("/api/v1/alarms", params={"state": "silenced"}, headers=AUTH)
    assert wrong.status_code == 400 and "muted" in wrong.json()["error"]


# One message every 4 s: the alarms that come meanwhile wait, and go out together in one digest.
ONE_A_WINDOW = {"poll": "50ms", "rate_limits": {"dingtalk-robot": {"limit": 1, "window": "4s"}}}


def digest_of(world: World, alarms: list[dict[str, str]]) -> dict[str, str]:
    """The links of the digest that carries the alarms (sent after the first alarm, which goes alone)."""
    world.alarm(exception_spec="the first, alone")
    for changes in alarms:
        world.alarm(**changes)
    digest = world.robot.robot_messages.wait_for(2, timeout=30)[1].content
    assert digest.startswith(f"【告警汇总】{len(alarms)} 条告警"), digest
    return world.links(1)


@pytest.mark.parametrize(
    ("hosts", "businesses", "shown", "muted"),
    [
        (["db1", "db1"], ["pay", "pay"], "for 'pay' on host 'db1'", ("pay", "db1")),
        (["db1", "db2"], ["pay", "pay"], "for 'pay' on any host", ("pay", None)),
        (["db1", "db2"], ["pay", "shop"], "for any business on any host", (None, None)),
    ],
)
def test_a_digests_mute_link_mutes_what_its_alarms_share_and_no_more(
    tmp_path: Path, hosts: list[str], businesses: list[str], shown: str, muted: tuple[str | None, str | None]
) -> None:
    with world_for(tmp_path, delivery=ONE_A_WINDOW) as world:
        pairs = list(zip(hosts, businesses, strict=True))
        links = digest_of(world, [{"alert_host": h, "alert_business": b, "exception_spec": f"{b}@{h}#{i}"}
                                  for i, (h, b) in enumerate(pairs)])  # fmt: skip
        assert set(links) == {"静默 1h", "静默 4h", "静默 24h", "认领 2 条 / ack 2"}
        page = text_of(world.client.get(links["静默 4h"]).text)
        assert f"Mute alarms of group chenmin/3 {shown} for 4h" in page
        assert confirm(world, links["静默 4h"]).status_code == 200
        (mute,) = world.mutes()
        assert (mute["business"], mute["host"]) == muted
        notice = world.robot.robot_messages.wait_for(3, timeout=30)[2].content
        assert notice.startswith("已静默 4h: 【告警汇总】2 条告警") and notice.endswith(" by chat link")
        login(world.client)
        row = text_of(world.client.get("/ui/mutes").text)
        assert ("any" in row) is (None in muted)

        world.alarm(alert_business="pay", alert_host="db1", exception_spec="again")  # what it muted
        world.alarm(alert_business="pay", alert_host="db9", exception_spec="a new host")
        world.alarm(alert_business="other", alert_host="db1", exception_spec="a new business")
        expected = {"again": "muted", "a new host": "muted" if muted[1] is None else "done",
                    "a new business": "muted" if muted[0] is None else "done"}  # fmt: skip
        sent = [v for v in expected if expected[v] == "done"]

        def later() -> str:
            return "\n".join(m.content for m in world.robot.robot_messages[3:])

        wait_until(lambda: all(spec in later() for spec in sent), timeout=30)  # held by the rate limit a moment
        states = {a["alarm"].get("exception_spec"): a["state"] for a in
                  world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"]}  # fmt: skip
        assert {k: states[k] for k in expected} == expected
        assert "again" not in later()


def test_a_digests_ack_link_acknowledges_each_of_its_alarms(tmp_path: Path) -> None:
    with world_for(tmp_path, delivery=ONE_A_WINDOW) as world:
        links = digest_of(world, [{"exception_spec": f"in the digest {n}"} for n in range(3)])
        path = links["认领 3 条 / ack 3"]
        assert "acknowledged these 3 alarms" in text_of(world.client.get(path).text)
        assert confirm(world, path).status_code == 200
        alarms = world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"]
        acked = {a["alarm"]["exception_spec"]: (a["acknowledged"] or {}).get("by") for a in alarms
                 if "exception_spec" in a["alarm"]}  # fmt: skip  # not the notice
        assert acked == {"the first, alone": None, **{f"in the digest {n}": "chat link" for n in range(3)}}
        notice = world.robot.robot_messages.wait_for(3, timeout=30)[2].content
        assert notice == "已认领: 【告警汇总】3 条告警: 陈敏测试alert_business by chat link"


def test_a_get_alone_changes_nothing(world: World) -> None:
    world.alarm()
    for path in world.links(0).values():
        for _ in range(3):  # a link preview, an unfurler, a person reading the page
            assert world.client.get(path).status_code == 200
    assert world.mutes() == []
    (alarm,) = world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"]
    assert alarm["acknowledged"] is None
    assert len(world.robot.robot_messages) == 1  # no notice either
    assert [e["action"] for e in world.client.get("/api/v1/audit", headers=AUTH).json()["entries"]] == []


def test_forged_altered_expired_and_reused_links_are_refused_and_do_nothing(world: World) -> None:
    world.alarm()
    links = world.links(0)
    token = links["静默 1h"].rpartition("/")[2]
    kind, _, subject, expires, signature = token.split(".")
    altered = f"/ui/act/{kind}.86400.{subject}.{expires}.{signature}"
    forged = "/ui/act/" + actions.sign("someone-elses-key-0123", Link(Kind.MUTE, 3600, subject, int(expires)))
    expired = "/ui/act/" + actions.sign(KEY, Link(Kind.MUTE, 3600, subject, int(time.time()) - 1))
    refused = [
        (altered, 403, "signature does not match"),
        (forged, 403, "signature does not match"),
        (expired, 410, "This link expired at"),
        ("/ui/act/garbage", 403, "not one alarm-bridge made"),
    ]
    for path, status, words in refused:
        shown = world.client.get(path)
        assert shown.status_code == status and words in text_of(shown.text) and "Nothing was done" in shown.text
        assert 'name="csrf"' not in shown.text  # no form to confirm
        posted = world.client.post(path, data={"csrf": "anything"})
        assert posted.status_code == status
    assert world.mutes() == []

    assert confirm(world, links["静默 1h"]).status_code == 200
    again = world.client.get(links["静默 1h"])
    assert again.status_code == 410 and "used already" in again.text and "by chat link" in text_of(again.text)
    assert (
        world.client.post(links["静默 1h"], data={"csrf": csrf_of(world.client.get(links["静默 4h"]).text)}).status_code
        == 410
    )
    assert len(world.mutes()) == 1


def test_a_post_without_the_pages_token_does_nothing(world: World) -> None:
    world.alarm()
    path = world.links(0)["静默 1h"]
    world.client.get(path)
    assert world.client.post(path, data={"csrf": "guessed"}).status_code == 403
    assert world.client.post(path).status_code == 403
    assert world.mutes() == []
    assert confirm(world, path).status_code == 200  # the link was not used up by the refused posts


def test_acknowledging_shows_who_and_when_on_the_alarm_list_and_in_the_api(world: World) -> None:
    world.alarm()
    assert confirm(world, world.links(0)["认领 / ack"]).status_code == 200
    (alarm,) = [a for a in world.client.get("/api/v1/alarms", headers=AUTH).json()["alarms"]
                if a["alarm"]["alert_business"] == "陈敏测试alert_business"]  # fmt: skip
    assert alarm["acknowledged"]["by"] == "chat link" and alarm["acknowledged"]["at"] > time.time() - 600
    login(world.client)
    assert "Acknowledged by chat link at" in text_of(world.client.get("/ui/alarms").text)
    assert world.robot.robot_messages.wait_for(2, timeout=10)[1].content.startswith(
        "已认领: 【高】陈敏测试alert_business"
    )


def test_mutes_are_listed_and_lifted_on_the_page_and_through_the_api(world: World) -> None:
    world.alarm(alert_host="db1")
    world.alarm(alert_host="db2")
    confirm(world, world.links(0)["静默 1h"])
    confirm(world, world.links(1)["静默 4h"])
    first, second = world.mutes()
    assert world.client.delete(f"/api/v1/mutes/{first['id']}", headers=AUTH).json()["lifted"]["id"] == first["id"]
    assert world.client.delete(f"/api/v1/mutes/{first['id']}", headers=AUTH).status_code == 404
    csrf = login(world.client)
    page = world.client.get("/ui/mutes")
    assert second["host"] in text_of(page.text) and f"/ui/mutes/{second['id']}/lift" in page.text
    lifted = world.client.post(f"/ui/mutes/{second['id']}/lift", data={"csrf": csrf})
    assert lifted.headers["location"] == "/ui/mutes?notice=lifted"
    assert world.mutes() == []
    world.alarm(alert_host="db1", exception_spec="after the lift")  # sent again
    assert "after the lift" in world.robot.robot_messages.wait_for(5, timeout=10)[4].content
    audit = world.client.get("/api/v1/audit", headers=AUTH).json()["entries"]
    assert [e["who"] for e in audit if e["action"] == "mute.lift"] == [USER, "token:ci"]


def test_with_require_login_the_page_asks_for_a_login_and_acts_as_the_user(tmp_path: Path) -> None:
    with world_for(tmp_path, require_login=True) as world:
        world.alarm()
        path = world.links(0)["静默 1h"]
        shown = world.client.get(path)
        assert shown.status_code == 303 and shown.headers["location"].startswith("/ui/login?next=/ui/act/")
        assert world.client.post(path, data={"csrf": "x"}).status_code == 303
        login(world.client)
        assert confirm(world, path).status_code == 200
        (mute,) = world.mutes()
        assert mute["who"] == USER
        (entry, *_) = world.client.get("/api/v1/audit", headers=AUTH).json()["entries"]
        assert (entry["who"], entry["action"]) == (USER, "action.mute") and "from testclient" in entry["detail"]
        metrics = world.client.get("/metrics").text
        assert 'alarm_bridge_actions_total{action="mute",result="done"}' in metrics
        assert "alarm_bridge_alarms_muted_total" in metrics


def test_a_mute_made_on_one_replica_holds_on_another(tmp_path: Path) -> None:
    with world_for(tmp_path, REDIS_URL) as world, client_for(world.settings) as other:
        world.alarm(alert_host="db1")
        confirm(world, world.links(0)["静默 4h"])
        world.robot.robot_messages.wait_for(2, timeout=10)  # the alarm, and the notice of the mute
        reply = other.post("/alarm_v2", json=signed(seed_alarm(alert_host="db1", exception_spec="on the other")))
        assert reply.json() == {"code": 0}
        (muted,) = [a for a in other.get("/api/v1/alarms", headers=AUTH).json()["alarms"]
                    if a["alarm"].get("exception_spec") == "on the other"]  # fmt: skip
        assert muted["state"] == "muted" and "muted by chat link" in muted["deliveries"][0]["detail"]
        assert len(world.robot.robot_messages) == 2


def test_when_no_alertmanager_takes_the_silence_nothing_is_done_and_the_link_still_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "default.yaml").write_text('{"fallback": {"target": {"id": "chenmin", "level": "3"}}}')
    top = {"alertmanager": {"bearer_token": "am-token-0123456789", "rules": str(rules)}}
    down = f"http://bridge:s3cret-am-password@127.0.0.1:{free_port()}"
    with world_for(tmp_path, top=top, alertmanagers=[down]) as world:
        sent = world.client.post(
            "/alertmanager", json=payload(), headers={"Authorization": "Bearer am-token-0123456789"}
        )
        assert sent.status_code == 200, sent.text
        links = world.links(0)
        assert set(links) == {"静默 1h", "静默 4h", "静默 24h", "认领 / ack"}
        page = world.client.get(links["静默 4h"])
        assert "Create an Alertmanager silence for 4h" in text_of(page.text) and 'alertname="DiskFull"' in text_of(
            page.text
        )
        failed = world.client.post(links["静默 4h"], data={"csrf": csrf_of(page.text)})
        assert failed.status_code == 502 and "Nothing was done" in failed.text
        assert "s3cret" not in failed.text and "s3cret" not in caplog.text
        assert world.client.get(links["静默 4h"]).status_code == 200  # not used up: it can be tried again
        assert len(world.robot.robot_messages) == 1  # and the group was told of nothing
