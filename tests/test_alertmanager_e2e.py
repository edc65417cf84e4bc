"""End to end with the real Alertmanager: alerts posted to it reach the fake DingTalk robot through the gateway."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from tests.fakes._server import FakeServer
from tests.fakes.alertmanager import Alertmanager, alertmanager, binary, now
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import REDIS_URL, config_data, free_port, gateway_process, require_binary, write_config
from tests.store.test_contract import redis_prefix
from tests.test_gateway import redis_server

TOKEN = "e2e-bearer-token"
ROBOT = "e2e-robot-token"
RULES = {
    "routes": [{"matchers": ['severity=~"critical|warning"'], "target": {"id": "chenmin", "level": "3"}}],
    "fallback": {"target": {"id": "chenmin", "level": "3"}, "fields": {"others": "text:fallback"}},
}


@dataclass
class Setup:
    robot: DingTalkFake
    config: Path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    binary()  # skip (or fail under CI=true) before starting anything
    fake = DingTalkFake(robot_rate=1000)
    fake.add_robot(ROBOT)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "default.yaml").write_text(yaml.safe_dump(RULES), encoding="utf-8")
    with FakeServer(fake.app()) as server:
        group = {
            "id": "chenmin",
            "level": "3",
            "channels": [{"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token={ROBOT}"}],
        }
        data: dict[str, Any] = config_data(
            f"sqlite:///{tmp_path / 's.db'}",
            groups=[group],
            delivery={"dry_run": False, "timeout": "2s", "deadline": "3s", "backoff": "200ms", "poll": "100ms"},
            alertmanager={"bearer_token": TOKEN, "rules": str(rules), "timezone": "UTC"},
        )
        yield Setup(fake, write_config(tmp_path / "config.yaml", data))


def texts(fake: DingTalkFake) -> list[str]:
    return [m.content for m in fake.robot_messages]


def assert_no_more(fake: DingTalkFake, count: int, seconds: float) -> None:
    """Nothing beyond ``count`` messages arrives for a few of Alertmanager's group intervals."""
    time.sleep(seconds)
    assert len(fake.robot_messages) == count, texts(fake)


def disk_alert(**changes: Any) -> dict[str, Any]:
    return {
        "labels": {"alertname": "E2EDiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "disk full on db1"},
        "generatorURL": "http://prom.example:9090/graph?g0.expr=disk",
        **changes,
    }


def test_a_firing_then_a_resolved_notification_reach_the_robot_once_each(setup: Setup, tmp_path: Path) -> None:
    with gateway_process(setup.config) as gateway:
        http_config = {"authorization": {"credentials": TOKEN}}
        with alertmanager(tmp_path / "am", f"{gateway}/alertmanager", http_config) as am:
            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600)))
            (firing,) = setup.robot.robot_messages.wait_for(1, timeout=20)
            assert firing.content.startswith("【高】E2EDiskFull 告警中\n")
            assert "【告警中 1 条】\n1. [高] E2EDiskFull @ db1:9100\n   disk full on db1\n" in firing.content
            assert f"静默: {am.url}/#/silences/new?filter=" in firing.content
            assert "来源: http://prom.example:9090/graph?g0.expr=disk" in firing.content

            am.post_alerts(disk_alert(startsAt=now(-60), endsAt=now()))  # the same alert, resolved now
            resolved = setup.robot.robot_messages.wait_for(2, timeout=20)[1]
            assert resolved.content.startswith("【高】E2EDiskFull 已恢复\n")
            assert "【已恢复 1 条】" in resolved.content and "【告警中" not in resolved.content
            assert_no_more(setup.robot, 2, seconds=5)  # two more group intervals: nothing is sent again
    assert "Notify success" in am.logs()


def test_while_the_gateway_answers_5xx_alertmanager_retries_and_the_alert_arrives_once(
    setup: Setup, tmp_path: Path
) -> None:
    require_binary("redis-server")
    port = free_port()
    data = yaml.safe_load(setup.config.read_text(encoding="utf-8"))
    data["store"] = {"url": f"redis://127.0.0.1:{port}/0", "timeout": "500ms"}  # down until started below
    config = write_config(setup.config, data)
    with gateway_process(config) as gateway:
        http_config = {"authorization": {"credentials": TOKEN}}
        with alertmanager(tmp_path / "am", f"{gateway}/alertmanager", http_config) as am:
            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600)))
            deadline = time.monotonic() + 20
            while "unexpected status code 503" not in am.logs():
                assert time.monotonic() < deadline, am.logs()
                time.sleep(0.1)
            time.sleep(2)  # a few more of Alertmanager's retries meet the 503 too
            assert len(setup.robot.robot_messages) == 0
            with redis_server(port):
                (message,) = setup.robot.robot_messages.wait_for(1, timeout=30)
                assert "【告警中 1 条】" in message.content
                assert_no_more(setup.robot, 1, seconds=5)
    (attempts,) = re.findall(r'msg="Notify success" attempts=(\d+)', am.logs())
    assert int(attempts) >= 3  # the first ones met the 503


def test_an_ha_pairs_two_copies_of_a_notification_are_delivered_once(setup: Setup, tmp_path: Path) -> None:
    with gateway_process(setup.config) as gateway:
        http_config = {"authorization": {"credentials": TOKEN}}
        with (
            alertmanager(tmp_path / "am1", f"{gateway}/alertmanager", http_config) as first,
            alertmanager(tmp_path / "am2", f"{gateway}/alertmanager", http_config) as second,
        ):
            alert = disk_alert(startsAt=now(), endsAt=now(3600))  # Prometheus sends the same alert to both
            first.post_alerts(alert)
            second.post_alerts(alert)
            _wait_for_log(first, "Notify success")
            _wait_for_log(second, "Notify success")
            assert_no_more(setup.robot, 1, seconds=3)
    assert first.url != second.url  # so the two payloads differed in externalURL


def test_a_clustered_ha_pair_on_two_replicas_gives_one_message_per_notification(setup: Setup, tmp_path: Path) -> None:
    data = yaml.safe_load(setup.config.read_text(encoding="utf-8"))
    prefix = data["store"]["prefix"] = redis_prefix()
    data["store"]["url"] = REDIS_URL
    config = write_config(setup.config, data)
    ports = free_port(), free_port()
    http_config = {"authorization": {"credentials": TOKEN}}
    # Each peer sends to its own replica; the second sends 4 s after the first unless the gossip says it went out,
    # and so sends the firing copy late: after the first one's resolved (as Alertmanager's issue #4152 shows).
    pair = {"group_interval": "2s", "peer_timeout": "4s"}
    try:
        with (
            gateway_process(config) as one,
            gateway_process(config) as two,
            alertmanager(tmp_path / "am1", f"{one}/alertmanager", http_config, cluster_port=ports[0],
                         peers=[ports[1]], **pair) as first,
            alertmanager(tmp_path / "am2", f"{two}/alertmanager", http_config, cluster_port=ports[1],
                         peers=[ports[0]], **pair) as second,
        ):  # fmt: skip
            started = now()
            for am in (first, second):
                am.post_alerts(disk_alert(startsAt=started, endsAt=now(3600)))
            setup.robot.robot_messages.wait_for(1, timeout=20)
            ended = now()
            for am in (first, second):
                am.post_alerts(disk_alert(startsAt=started, endsAt=ended))
            _wait_for_notifications(4, first, second)  # each peer sent both: the firing and the resolved
            assert_no_more(setup.robot, 2, seconds=3)
            firing, resolved = texts(setup.robot)
            assert firing.startswith("【高】E2EDiskFull 告警中\n") and resolved.startswith("【高】E2EDiskFull 已恢复\n")

            other = disk_alert(startsAt=now(), endsAt=now(3600))
            other["labels"]["instance"] = "db2:9100"
            for am in (first, second):  # a change in the group: a new alert
                am.post_alerts(other)
            (changed,) = setup.robot.robot_messages.wait_for(3, timeout=20)[2:]
            assert "【告警中 1 条】\n1. [高] E2EDiskFull @ db2:9100" in changed.content
            assert_no_more(setup.robot, 3, seconds=8)  # past the second peer's copy
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _wait_for_notifications(count: int, *peers: Alertmanager, timeout: float = 40.0) -> None:
    """Until the peers together have sent ``count`` notifications successfully."""
    deadline = time.monotonic() + timeout
    while sum(am.logs().count('msg="Notify success"') for am in peers) < count:
        assert time.monotonic() < deadline, "\n".join(am.logs() for am in peers)
        time.sleep(0.1)


def test_wrong_credentials_are_refused_and_nothing_is_delivered(setup: Setup, tmp_path: Path) -> None:
    with gateway_process(setup.config) as gateway:
        http_config = {"basic_auth": {"username": "alertmanager", "password": "wrong"}}
        with alertmanager(tmp_path / "am", f"{gateway}/alertmanager", http_config) as am:
            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600)))
            _wait_for_log(am, "unexpected status code 401")
    assert len(setup.robot.robot_messages) == 0


def _wait_for_log(am: Alertmanager, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in am.logs():
        assert time.monotonic() < deadline, am.logs()
        time.sleep(0.1)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', page)
    assert match, page
    return match[1]


def _silences(am: Alertmanager) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(f"{am.url}/api/v2/silences", timeout=10).json()
    return found


def test_a_silence_link_confirmed_makes_a_silence_and_alertmanager_stops_notifying(
    setup: Setup, tmp_path: Path
) -> None:
    port = free_port()
    http_config = {"authorization": {"credentials": TOKEN}}
    with alertmanager(tmp_path / "am", f"http://127.0.0.1:{port}/alertmanager", http_config) as am:
        data = yaml.safe_load(setup.config.read_text(encoding="utf-8"))
        dead = f"http://127.0.0.1:{free_port()}"  # the first of an HA pair is down: the second answers
        actions = {"key": "e2e-action-key-0123456789", "alertmanagers": [dead, am.url]}
        data["web"] = {"external_url": f"http://127.0.0.1:{port}", "actions": actions}
        with gateway_process(write_config(setup.config, data), port=port):
            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600)))
            (firing,) = setup.robot.robot_messages.wait_for(1, timeout=20)
            link = dict(re.findall(r"^(.+?): (http://\S+/ui/act/\S+)$", firing.content, re.MULTILINE))["静默 1h"]
            browser = requests.Session()
            page = browser.get(link, timeout=10)
            assert page.status_code == 200 and "alertname=&#34;E2EDiskFull&#34;" in page.text
            assert _silences(am) == []  # the GET alone made none

            done = browser.post(link, data={"csrf": _csrf(page.text)}, timeout=10)
            assert done.status_code == 200, done.text
            (silence,) = _silences(am)
            assert silence["status"]["state"] == "active" and silence["createdBy"] == "chat link"
            assert silence["matchers"] == [{"name": "alertname", "value": "E2EDiskFull", "isRegex": False,
                                            "isEqual": True}]  # fmt: skip
            assert silence["id"] in done.text
            amtool = [shutil.which("amtool") or require_binary("amtool"), f"--alertmanager.url={am.url}"]
            listed = subprocess.run([*amtool, "silence", "query"], capture_output=True, text=True, check=True)
            assert silence["id"] in listed.stdout and "chat link" in listed.stdout
            notice = setup.robot.robot_messages.wait_for(2, timeout=20)[1].content
            assert notice.startswith("已静默 1h: 【高】E2EDiskFull") and notice.endswith("by chat link")

            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600), labels={**disk_alert()["labels"],
                                                                              "instance": "db2:9100"}))  # fmt: skip
            assert_no_more(setup.robot, 2, seconds=5)  # two more group intervals: Alertmanager sends nothing
            alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=10).json()
            assert {a["labels"]["instance"]: a["status"]["silencedBy"] for a in alerts} == {
                "db1:9100": [silence["id"]], "db2:9100": [silence["id"]]
            }  # fmt: skip

            early = re.search(r'href="(http://[^"]+/ui/act/expire\.[^"]+)"', done.text)
            assert early, done.text
            page = browser.get(early[1], timeout=10)
            assert browser.post(early[1], data={"csrf": _csrf(page.text)}, timeout=10).status_code == 200
            assert _silences(am)[0]["status"]["state"] == "expired"


def test_a_digests_silence_link_silences_each_notification_group_it_holds(setup: Setup, tmp_path: Path) -> None:
    port = free_port()
    http_config = {"authorization": {"credentials": TOKEN}}
    with alertmanager(tmp_path / "am", f"http://127.0.0.1:{port}/alertmanager", http_config) as am:
        data = yaml.safe_load(setup.config.read_text(encoding="utf-8"))
        data["web"] = {"external_url": f"http://127.0.0.1:{port}",
                       "actions": {"key": "e2e-action-key-0123456789", "alertmanagers": [am.url]}}  # fmt: skip
        # One message every 15 s: the two groups notified after the first wait (Alertmanager sends them about a
        # second after they are posted, a few seconds on a busy machine), and go out in one digest.
        data["delivery"]["rate_limits"] = {"dingtalk-robot": {"limit": 1, "window": "15s"}}
        with gateway_process(write_config(setup.config, data), port=port):
            am.post_alerts(disk_alert(startsAt=now(), endsAt=now(3600)))
            setup.robot.robot_messages.wait_for(1, timeout=20)
            names = ("E2EHighLoad", "E2ESwapFull")
            am.post_alerts(*(disk_alert(startsAt=now(), endsAt=now(3600), labels={**disk_alert()["labels"],
                                        "alertname": name}) for name in names))  # fmt: skip
            digest = setup.robot.robot_messages.wait_for(2, timeout=60)[1].content
            assert digest.startswith("【告警汇总】2 条告警"), digest
            links = dict(re.findall(r"^(.+?): (http://\S+/ui/act/\S+)$", digest, re.MULTILINE))
            assert set(links) == {"静默 1h", "静默 4h", "静默 24h", "认领 2 条 / ack 2"}
            browser = requests.Session()
            page = browser.get(links["静默 4h"], timeout=10)
            assert "Create 2 Alertmanager silences" in page.text and _silences(am) == []
            done = browser.post(links["静默 4h"], data={"csrf": _csrf(page.text)}, timeout=10)
            assert done.status_code == 200, done.text
            made = {s["matchers"][0]["value"]: s for s in _silences(am)}
            assert set(made) == set(names)  # one silence a group: not the first alarm's, not everything critical
            assert all(len(s["matchers"]) == 1 and s["status"]["state"] == "active" for s in made.values())
            assert done.text.count("End this silence early") == 2
            amtool = [shutil.which("amtool") or require_binary("amtool"), f"--alertmanager.url={am.url}"]
            listed = subprocess.run([*amtool, "silence", "query"], capture_output=True, text=True, check=True)
            assert all(s["id"] in listed.stdout for s in made.values())
            alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=10).json()
            assert {a["labels"]["alertname"]: bool(a["status"]["silencedBy"]) for a in alerts} == {
                "E2EDiskFull": False, "E2EHighLoad": True, "E2ESwapFull": True
            }  # fmt: skip
