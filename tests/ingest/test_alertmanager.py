"""POST /alertmanager over HTTP: auth, payload checks, reply semantics, dedup of retries and HA copies, storms."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import parse
from bridge.ingest import alertmanager
from bridge.schema import ConfigError
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import MAX_BODY_BYTES, DingTalkFake
from tests.fakes.feishu import FeishuFake
from tests.helpers import config_data, free_port, make_settings

TOKEN = "am-bearer-token-0123456789"
USER, PASSWORD = "alertmanager", "am-basic-password-xyz"
ROBOT = "am-robot-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def alert(n: int = 1, status: str = "firing", **changes: Any) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": f"host{n}:9100", "severity": "critical", "team": "a"},
        "annotations": {"summary": f"disk full on host{n}"},
        "startsAt": "2026-11-29T00:52:30.028476067Z",
        "endsAt": "2026-11-29T01:02:30Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom.example:9090/graph?g0.expr=disk",
        "fingerprint": f"f486abc4d3{n:06x}",
        **changes,
    }


def payload(*alerts: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What Alertmanager 0.25 posts (the reference's captured body, with the given alerts)."""
    alerts = alerts or (alert(),)
    return {
        "receiver": "web\\.ok",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "team": "a"},
        "commonAnnotations": {},
        "externalURL": "http://am-1.example:9093",
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        **changes,
    }


@dataclass
class Bridge:
    robot: DingTalkFake
    config: dict[str, Any]
    rules: Path

    @contextmanager
    def client(self) -> Iterator[TestClient]:
        with TestClient(create_app(parse(self.config, "test.yaml"))) as client:
            yield client

    def texts(self) -> list[str]:
        return [m.content for m in self.robot.robot_messages]


FALLBACK = {"fallback": {"target": {"id": "chenmin", "level": "3", "dep": "du-op", "env": "prod"}}}


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    fake = DingTalkFake(robot_rate=10_000)
    fake.add_robot(ROBOT)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "default.yaml").write_text(yaml.safe_dump(FALLBACK))
    other = {"fallback": {"target": {"id": "chenmin", "level": "3"}, "fields": {"others": "text:from other.yaml"}}}
    (folder / "other.yaml").write_text(yaml.safe_dump(other))
    (folder / "nogroup.yaml").write_text(yaml.safe_dump({"fallback": {"target": {"id": "nobody", "level": "9"}}}))
    with FakeServer(fake.app()) as server:
        group = {
            "id": "chenmin",
            "level": "3",
            "name": "数据组",
            "channels": [{"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token={ROBOT}"}],
        }
        data = config_data(
            f"sqlite:///{tmp_path / 's.db'}",
            groups=[group],
            delivery={"dry_run": False, "timeout": "1s", "deadline": "2s", "backoff": "100ms", "backoff_max": "200ms",
                      "poll": "50ms", "rate_limits": {"dingtalk-robot": {"limit": 10_000, "window": "60s"}}},
            alertmanager={"bearer_token": TOKEN, "username": USER, "password": PASSWORD, "rules": str(folder)},
        )  # fmt: skip
        yield Bridge(fake, data, folder)


# -- authentication --


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": f"Token {TOKEN}"}, 401),
        (BEARER, 200),
        ({"Authorization": f"bearer  {TOKEN} "}, 200),
        (basic(USER, PASSWORD), 200),
        (basic(USER, "wrong"), 401),
        (basic("someone", PASSWORD), 401),
        ({"Authorization": "Basic not-base64!"}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"no colon").decode()}, 401),
    ],
)
def test_bearer_and_basic_auth_as_http_config_sends_them(bridge: Bridge, headers: dict[str, str], status: int) -> None:
    with bridge.client() as client:
        response = client.post("/alertmanager", json=payload(), headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text and PASSWORD not in response.text


def test_without_configured_credentials_every_request_is_refused(bridge: Bridge) -> None:
    bridge.config["alertmanager"] = {"rules": str(bridge.rules)}
    with bridge.client() as client:
        response = client.post("/alertmanager", json=payload(), headers=BEARER)
    assert response.status_code == 401
    assert "no credentials are configured" in response.json()["error"]


def test_auth_can_be_disabled_explicitly_with_a_warning_at_start(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    bridge.config["alertmanager"] = {"auth_disabled": True, "rules": str(bridge.rules)}
    with caplog.at_level(logging.WARNING, "bridge.ingest.alertmanager"), bridge.client() as client:
        assert client.post("/alertmanager", json=payload()).status_code == 200
    assert "authentication is disabled" in caplog.text


# -- the payload --


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is not JSON"),
        (b"{", "the body is not JSON"),
        (b"[1, 2]", "the body is a JSON list, expected an object"),
        (json.dumps({k: v for k, v in payload().items() if k != "version"}), "version None is not supported"),
        (json.dumps(payload(version="3")), "version '3' is not supported: alarm-bridge reads version \"4\""),
        (json.dumps(payload(version=4)), "version 4 is not supported"),
        (json.dumps(payload(alerts=[])), "alerts: expected a non-empty list"),
        (json.dumps(payload(alerts={"a": 1})), "alerts: expected a non-empty list"),
        (json.dumps(payload(status="pending")), "status: expected firing or resolved, got 'pending'"),
        (json.dumps(payload(alerts=["x"])), "alerts[0]: expected an object"),
        (json.dumps(payload(alert(status="unknown"))), "alerts[0].status: expected firing or resolved"),
        (json.dumps(payload(alert(), alert(labels={"a": 1}))), "alerts[1].labels: expected an object of strings"),
        (json.dumps(payload(alert(annotations=["x"]))), "alerts[0].annotations: expected an object of strings"),
        (json.dumps(payload(alert(startsAt="yesterday"))), "alerts[0].startsAt: 'yesterday' is not an RFC 3339 time"),
        (json.dumps(payload(alert(generatorURL=3))), "alerts[0].generatorURL: expected a string, got int"),
        (json.dumps(payload(truncatedAlerts=-1)), "truncatedAlerts: expected a number >= 0"),
        (json.dumps(payload(commonLabels=None, externalURL=7)), "externalURL: expected a string"),
        (json.dumps(payload(alert(labels={"alertname": "Disk\ud800"}))), "lone UTF-16 surrogate"),
    ],
)
def test_a_bad_payload_answers_400_saying_what_is_wrong(bridge: Bridge, body: bytes | str, message: str) -> None:
    with bridge.client() as client:
        response = client.post("/alertmanager", content=body, headers=BEARER)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert bridge.robot.robot_messages[:] == []


def test_unknown_keys_and_missing_optional_ones_are_tolerated(bridge: Bridge) -> None:
    minimal = {"status": "firing", "labels": {"alertname": "Old"}, "startsAt": "2026-11-29T00:52:30Z", "new": [1]}
    body = {"version": "4", "status": "firing", "alerts": [minimal], "futureField": {"x": 1}, "commonLabels": None}
    with bridge.client() as client:
        response = client.post("/alertmanager", json=body, headers=BEARER)
    assert response.status_code == 200, response.text
    assert "Old" in bridge.texts()[0]


def test_a_body_over_the_limit_answers_413(bridge: Bridge) -> None:
    bridge.config["alertmanager"]["max_body_bytes"] = 2048
    with bridge.client() as client:
        response = client.post("/alertmanager", json=payload(*(alert(n) for n in range(20))), headers=BEARER)
    assert response.status_code == 413
    assert "max_alerts" in response.json()["error"]


def test_only_post_is_accepted(bridge: Bridge) -> None:
    with bridge.client() as client:
        assert client.get("/alertmanager", headers=BEARER).status_code == 405


# -- rulesets and reply semantics --


def test_the_url_path_picks_the_rules_file(bridge: Bridge) -> None:
    with bridge.client() as client:
        assert client.post("/alertmanager/other", json=payload(), headers=BEARER).status_code == 200
        response = client.post("/alertmanager/absent", json=payload(), headers=BEARER)
    assert response.status_code == 404
    assert "no rules file absent.yaml" in response.json()["error"]
    assert "其他:from other.yaml" in bridge.texts()[0]
    assert len(bridge.texts()) == 1


def test_the_store_down_answers_503_so_that_alertmanager_retries(bridge: Bridge) -> None:
    bridge.config["store"] = {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": "500ms"}
    with bridge.client() as client:
        started = time.monotonic()
        response = client.post("/alertmanager", json=payload(), headers=BEARER)
        assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json() == {"error": "the store is unavailable; retry"}


def test_a_route_to_a_missing_group_answers_500_so_that_nothing_is_lost_silently(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "bridge.ingest.alertmanager"), bridge.client() as client:
        response = client.post("/alertmanager/nogroup", json=payload(), headers=BEARER)
    assert response.status_code == 500
    assert "no alert group nobody/9 (fallback)" in response.json()["error"]
    assert "no alert group for nobody/9" in caplog.text


def test_alerts_delivered_beside_a_missing_group_are_not_delivered_again_by_the_retries(bridge: Bridge) -> None:
    """Alertmanager retries the whole notification for as long as it is answered 500, past the dedup window."""
    route = {"name": "team a", "matchers": ['team="a"'], "target": {"id": "chenmin", "level": "3"}}
    rules = {"defaults": {"target": {"dep": "du-op", "env": "prod"}}, "routes": [route],
             "fallback": {"target": {"id": "nobody", "level": "9"}}}  # fmt: skip
    (bridge.rules / "mixed.yaml").write_text(yaml.safe_dump(rules))
    bridge.config["groups"][0]["dedup_window"] = "2s"
    team_b = alert(2, labels={"alertname": "DiskFull", "instance": "host2:9100", "team": "b"})
    with bridge.client() as client:
        for _ in range(3):  # the retries outlast the 2 s window
            assert client.post("/alertmanager/mixed", json=payload(alert(1), team_b), headers=BEARER).status_code == 500
            time.sleep(1.2)
    assert len(bridge.texts()) == 1


def test_a_repeated_notification_and_an_ha_peers_copy_are_delivered_once(bridge: Bridge) -> None:
    first = payload(alert(1), alert(2))
    with bridge.client() as client:
        assert client.post("/alertmanager", json=first, headers=BEARER).json() == {"accepted": 1, "duplicates": 0}
        assert client.post("/alertmanager", json=first, headers=BEARER).json() == {"accepted": 0, "duplicates": 1}
        peer = payload(alert(2), alert(1), externalURL="http://am-2.example:9093")  # another order, another URL
        assert client.post("/alertmanager", json=peer, headers=basic(USER, PASSWORD)).json()["duplicates"] == 1
        bridge.robot.robot_messages.wait_for(1)
        # what changes the notification is delivered: an alert resolving, an alert joining
        assert client.post("/alertmanager", json=payload(alert(1), alert(2, "resolved")), headers=BEARER).status_code
        assert client.post("/alertmanager", json=payload(alert(1), alert(2), alert(3)), headers=BEARER).status_code
        bridge.robot.robot_messages.wait_for(3)
        time.sleep(0.3)
    texts = bridge.texts()
    assert len(texts) == 3
    assert "【告警中 2 条】" in texts[0] and "【已恢复" not in texts[0]
    assert "【告警中 1 条】" in texts[1] and "【已恢复 1 条】" in texts[1]
    assert "【告警中 3 条】" in texts[2]


def test_a_firing_copy_that_comes_after_its_alerts_resolved_is_stale_and_not_sent(bridge: Bridge) -> None:
    bridge.config["groups"][0]["dedup_window"] = 0  # the group repeats everything: alertmanager.dedup_window holds
    with bridge.client() as client:

        def post(notification: dict[str, Any]) -> Any:
            return client.post("/alertmanager", json=notification, headers=BEARER).json()

        assert post(payload(alert(1, "resolved"))) == {"accepted": 1, "duplicates": 0}
        late = payload(alert(1), externalURL="http://am-2.example:9093")  # the other peer's firing, late
        assert post(late) == {"accepted": 0, "duplicates": 1}
        assert post(payload(alert(1, "resolved"), externalURL="http://am-2.example:9093"))["duplicates"] == 1
        assert post(payload(alert(1, startsAt="2026-11-29T03:00:00Z")))["accepted"] == 1  # firing again: news
        assert post(payload(alert(1), alert(2)))["accepted"] == 1  # alert 2 is news, though 1 is stale
        bridge.robot.robot_messages.wait_for(3)
        time.sleep(0.3)
    texts = bridge.texts()
    assert len(texts) == 3, texts
    assert "【已恢复 1 条】" in texts[0] and "【告警中" not in texts[0]
    assert "【告警中 1 条】" in texts[1] and "【告警中 2 条】" in texts[2]


def test_the_message_shows_sections_counts_local_times_and_links(bridge: Bridge) -> None:
    bridge.config["alertmanager"]["timezone"] = "Europe/Berlin"
    mention = {"mention_mobiles": "13800000000"}
    body = payload(alert(1, annotations={"summary": "disk full on host1", **mention}), alert(2, "resolved"))
    with bridge.client() as client:
        assert client.post("/alertmanager", json=body, headers=BEARER).status_code == 200
        (message,) = bridge.robot.robot_messages.wait_for(1)
    text = message.content
    assert text.startswith("【高】DiskFull 告警中\n部门:du-op\n环境:prod\n")
    assert "告警时间:2026-11-29 01:52:30" in text  # 00:52:30 UTC in Berlin
    assert "【告警中 1 条】\n1. [高] DiskFull @ host1:9100\n   disk full on host1\n   开始: 2026-11-29 01:52:30" in text
    assert "恢复: 2026-11-29 02:02:30 (持续 9m59s)" in text
    assert "来源: http://prom.example:9090/graph?g0.expr=disk" in text
    silence = "http://am-1.example:9093/#/silences/new?filter=%7Balertname%3D%22DiskFull%22%2C%20instance%3D%22host1"
    assert f"静默: {silence}" in text
    assert text.count("静默:") == 1  # no silence link for a resolved alert
    assert "Alertmanager: http://am-1.example:9093/#/alerts?receiver=web%5C.ok" in text
    assert text.endswith("@13800000000")


@pytest.mark.parametrize(("status", "colour"), [("firing", "red"), ("resolved", "green")])
def test_a_notification_reaches_feishu_as_a_card_with_its_links_and_label_mentions(
    bridge: Bridge, status: str, colour: str
) -> None:
    feishu = FeishuFake()
    feishu.add_bot("am-hook")
    mention = {"mention_userids": "ou_oncall dingtalk-id"}
    with FakeServer(feishu.app()) as server:
        group = bridge.config["groups"][0] | {"format": "markdown"}
        group["channels"] = [{"type": "feishu-robot", "webhook": f"{server.url}/open-apis/bot/v2/hook/am-hook"}]
        bridge.config["groups"] = [group]
        with bridge.client() as client:
            body = payload(alert(1, status, labels={**alert(1)["labels"], **mention}))
            assert client.post("/alertmanager", json=body, headers=BEARER).status_code == 200
            (message,) = feishu.messages.wait_for(1)
    card = message.content
    assert card["header"]["template"] == colour and card["header"]["title"]["content"].startswith("【高】")
    assert "**DiskFull**" in message.text and "[来源](http://prom.example:9090/graph?g0.expr=disk)" in message.text
    assert "###" not in message.text and "@ou_oncall" not in message.text  # lark_md: no headings, mentions as <at>
    assert message.mentions == ["ou_oncall"]  # an open id from the labels; the other vendor's id is left out


def test_a_start_at_the_end_of_time_is_shown_as_given_instead_of_failing(bridge: Bridge) -> None:
    body = payload(alert(startsAt="9999-12-31T23:59:59Z"))  # Shanghai's 08:00 later is past datetime's range
    with bridge.client() as client:
        assert client.post("/alertmanager", json=body, headers=BEARER).status_code == 200
        (message,) = bridge.robot.robot_messages.wait_for(1)
    assert "告警时间:9999-12-31 23:59:59+0000" in message.content


def test_a_500_alert_storm_is_accepted_at_once_even_while_the_channel_hangs(bridge: Bridge) -> None:
    storm = payload(*(alert(n, annotations={"summary": "x" * 200}) for n in range(500)))
    assert len(json.dumps(storm)) > 250_000
    bridge.robot.hang(30)
    with bridge.client() as client:
        started = time.monotonic()
        response = client.post("/alertmanager", json=storm, headers=BEARER)
        elapsed = time.monotonic() - started
        bridge.robot.unhang()
        assert response.status_code == 200
        assert elapsed < 3, elapsed  # bounded by nothing the channel does: it is well under a second here
        (message,) = bridge.robot.robot_messages.wait_for(1, timeout=20)
    assert len(json.dumps(message.body, ensure_ascii=False).encode()) <= MAX_BODY_BYTES
    assert "【告警中 500 条】" in message.content and "…另有 480 条未列出" in message.content


def test_one_message_per_alert_mode_delivers_every_alert_once_within_the_byte_limit(bridge: Bridge) -> None:
    bridge.config["alertmanager"]["per_alert"] = True
    bridge.robot.hang(30)  # held back, the alarms are merged into digests when the robot answers again
    storm = payload(*(alert(n, annotations={"summary": "y" * 300}) for n in range(150)))
    with bridge.client() as client:
        response = client.post("/alertmanager", json=storm, headers=BEARER)
        assert response.json() == {"accepted": 150, "duplicates": 0}
        time.sleep(0.5)
        bridge.robot.unhang()
        deadline = time.monotonic() + 30
        while len(seen := re.findall(r"@ host(\d+):9100\b", "".join(bridge.texts()))) < 150:
            assert time.monotonic() < deadline, len(seen)
            time.sleep(0.1)
        time.sleep(0.3)
    seen = re.findall(r"@ host(\d+):9100\b", "".join(bridge.texts()))
    assert sorted(map(int, seen)) == list(range(150))  # each exactly once
    assert all(
        len(json.dumps(m.body, ensure_ascii=False).encode()) <= MAX_BODY_BYTES for m in bridge.robot.robot_messages
    )


# -- rules at start and on reload --


def test_broken_rules_stop_the_start_with_the_file_and_key(bridge: Bridge) -> None:
    (bridge.rules / "broken.yaml").write_text(yaml.safe_dump({"fallback": {"target": {"id": "x"}}}))
    with pytest.raises(ConfigError, match=r"broken\.yaml: fallback\.target\.level: is required"):
        create_app(parse(bridge.config, "test.yaml"))


@pytest.mark.anyio
async def test_rules_are_read_again_when_the_settings_are_reloaded(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    settings = parse(bridge.config, "test.yaml")
    receiver = alertmanager.Receiver(settings)
    assert sorted(await receiver.rulesets(settings)) == ["default", "nogroup", "other"]
    (bridge.rules / "new.yaml").write_text(yaml.safe_dump(FALLBACK))
    assert "new" not in await receiver.rulesets(settings)
    reloaded = parse(bridge.config, "test.yaml")
    assert "new" in await receiver.rulesets(reloaded)
    (bridge.rules / "new.yaml").write_text("fallback: {}")
    with caplog.at_level(logging.ERROR, "bridge.ingest.alertmanager"):
        assert "new" in await receiver.rulesets(
            make_settings("sqlite:///x.db", alertmanager={"rules": str(bridge.rules)})
        )
    assert "the rules stay as they were" in caplog.text
