"""Operating the gateway: health and readiness, metrics that move, config reload by HTTP and SIGHUP, logs."""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config_file import load, parse
from bridge.logs import JsonFormatter
from bridge.schema import ConfigError
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import config_data, free_port, gateway_process, samples, seed_alarm, signed, value, write_config


def test_health_and_readiness(tmp_path: Path) -> None:
    with TestClient(create_app(parse(config_data(f"sqlite:///{tmp_path / 's.db'}"), "t.yaml"))) as client:
        assert client.get("/-/healthy").text == "OK"
        assert client.get("/-/ready").status_code == 200
    unreachable = parse(config_data(f"redis://127.0.0.1:{free_port()}/0"), "t.yaml")
    with TestClient(create_app(unreachable)) as client:
        assert client.get("/-/healthy").status_code == 200
        assert client.get("/-/ready").status_code == 503


def test_serve_fails_with_exit_code_3_when_its_port_is_taken(tmp_path: Path) -> None:
    config_path = write_config(tmp_path / "c.yaml", config_data(f"sqlite:///{tmp_path / 's.db'}"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        command = ["serve", "--config", str(config_path), "--port", str(taken.getsockname()[1])]
        done = subprocess.run([sys.executable, "-m", "bridge", *command], capture_output=True, timeout=60, check=False)
    assert done.returncode == 3
    assert b"address already in use" in done.stderr


def test_metrics_move_after_a_mix_of_alarms_and_failures(tmp_path: Path) -> None:
    fake = DingTalkFake()
    fake.add_robot("good-token-1a2b")
    with FakeServer(fake.app()) as server:
        data = config_data(f"sqlite:///{tmp_path / 's.db'}", delivery={"backoff": "1h", "timeout": "1s"})
        data["groups"][0]["channels"] = [
            {"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token=good-token-1a2b"},
            {"type": "dingtalk-robot", "webhook": f"{server.url}/robot/send?access_token=bad-token-9z8y"},
            {"type": "wecom-robot", "webhook": f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=k"},
        ]
        data["groups"][0]["templates"] = {"native/text.j2": "{{ alarm.nope }}"}
        with TestClient(create_app(parse(data, "t.yaml"))) as client:
            before = samples(client)
            assert client.post("/alarm_v2", content=json.dumps(signed(seed_alarm()))).json()["code"] == 4002
            assert client.post("/alarm_v2", content=json.dumps(signed(seed_alarm()))).json()["code"] == 1010
            assert client.post("/alarm_v2", content=b"{").json()["code"] == 1002
            after = samples(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("alarm_bridge_alarms_received_total", source="native", code="4002") == 1
    assert moved("alarm_bridge_alarms_received_total", source="native", code="1010") == 1
    assert moved("alarm_bridge_alarms_received_total", source="native", code="1002") == 1
    assert moved("alarm_bridge_dedup_hits_total", source="native") == 1
    good, bad = "dingtalk-robot …1a2b", "dingtalk-robot …9z8y"  # two robots of one group, told apart
    assert moved("alarm_bridge_deliveries_total", channel="dingtalk", target=good, reason="ok") == 1
    assert moved("alarm_bridge_deliveries_total", channel="dingtalk", target=bad, reason="rejected") == 1
    assert moved("alarm_bridge_deliveries_total", channel="wecom", target="wecom-robot …k", reason="network") == 1
    assert moved("alarm_bridge_dead_letters_total", channel="dingtalk", target=bad) == 1
    assert moved("alarm_bridge_retries_total", channel="wecom") == 1
    assert moved("alarm_bridge_template_errors_total") >= 1
    assert moved("alarm_bridge_delivery_duration_seconds_count", channel="dingtalk") == 2
    assert value(after, "alarm_bridge_outbox_depth") == 1  # the WeCom robot's retry waits
    assert value(after, "alarm_bridge_build_info", version="0.1.0", python=platform.python_version()) == 1


def test_sighup_applies_a_good_config_and_refuses_a_broken_one(tmp_path: Path) -> None:
    data = config_data(f"sqlite:///{tmp_path / 's.db'}")
    path = write_config(tmp_path / "config.yaml", data)
    alarm = json.dumps(signed(seed_alarm(level="9")))
    with gateway_process(path) as url:
        process_id = int(requests.get(url + "/-/healthy", timeout=5).headers.get("x-request-id", "0") and 0) or _pid(
            url
        )

        def reloads(result: str) -> float:
            return value(
                samples(text=requests.get(url + "/metrics", timeout=5).text),
                "alarm_bridge_config_reloads_total",
                result=result,
            )

        assert requests.post(url + "/alarm_v2", data=alarm, timeout=5).json()["code"] == 3001
        path.write_text("store: [broken", encoding="utf-8")
        os.kill(process_id, signal.SIGHUP)
        wait_for(lambda: reloads("failure") == 1)
        assert requests.post(url + "/alarm_v2", data=alarm, timeout=5).json()["code"] == 3001  # old config stays
        data["groups"].append({"id": "chenmin", "level": "9"})
        write_config(path, data)
        os.kill(process_id, signal.SIGHUP)
        wait_for(lambda: reloads("success") == 1)
        assert requests.post(url + "/alarm_v2", data=alarm, timeout=5).json()["code"] == 0
        found = samples(text=requests.get(url + "/metrics", timeout=5).text)
        assert value(found, "alarm_bridge_config_last_reload_successful") == 1


def _pid(url: str) -> int:
    """The gateway's process id, from the port it listens on."""
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmdline and port.encode() in cmdline:
                return int(entry.name)
    raise LookupError(port)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


TOKEN = {"Authorization": "Bearer reload-token-0123456789"}


def test_http_reload_only_when_enabled_and_with_a_token(tmp_path: Path) -> None:
    data = config_data(f"sqlite:///{tmp_path / 's.db'}", web={"api_tokens": {"ops": TOKEN["Authorization"][7:]}})
    path = write_config(tmp_path / "config.yaml", data)
    with TestClient(create_app(load(path))) as client:
        assert client.post("/-/reload", headers=TOKEN).status_code == 403
    data["reload_enabled"] = True
    write_config(path, data)
    with TestClient(create_app(load(path))) as client:
        assert client.post("/-/reload").status_code == 401
        assert client.post("/-/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/-/reload", headers=TOKEN).status_code == 200
        data["store"] = {"url": "redis://127.0.0.1:6379/0"}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        refused = client.post("/-/reload", headers=TOKEN)
        assert refused.status_code == 500 and "needs a restart" in refused.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Content-Type": "text/plain"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example", **TOKEN},  # a token in a browser's hands is still refused there
    ],
)
def test_a_cross_site_reload_is_refused(tmp_path: Path, headers: dict[str, str]) -> None:
    data = config_data(f"sqlite:///{tmp_path / 's.db'}", reload_enabled=True, web={"api_tokens": {"ops": "t"}})
    with TestClient(create_app(parse(data, "t.yaml"))) as client:
        before = _reloads()
        refused = client.post("/-/reload", content="x", headers=headers)
        assert refused.status_code == 403 and "web page" in refused.text
        assert _reloads() == before  # not tried at all


def _reloads() -> float:
    return sum(
        REGISTRY.get_sample_value("alarm_bridge_config_reloads_total", {"result": r}) or 0
        for r in ("success", "failure")
    )


def test_reload_over_http_without_a_token_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reload_enabled: POST /-/reload needs a token"):
        parse(config_data(f"sqlite:///{tmp_path / 's.db'}", reload_enabled=True), "t.yaml")


def test_json_logs_carry_the_request_id_and_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(parse(config_data(f"sqlite:///{tmp_path / 's.db'}"), "t.yaml"))) as client:
        with caplog.at_level(logging.INFO):
            response = client.post(
                "/alarm_v2", content=json.dumps(signed(seed_alarm())), headers={"X-Request-Id": "abc123"}
            )
        assert response.headers["x-request-id"] == "abc123"
        assert client.get("/-/healthy").headers["x-request-id"] != "abc123"
    record = next(r for r in caplog.records if "dry-run delivery" in r.getMessage())
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "abc123" and line["level"] == "INFO" and "\n" not in JsonFormatter().format(record)
    assert "YYLmfY6IRdjZMQ1" not in caplog.text
