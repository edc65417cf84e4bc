"""Clients that already exist: the seed's own send_v2, and the `alarm-bridge send` command, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import SECRET, config_data, gateway_process, write_config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("seed")
    yield from _serve(folder)


def _serve(folder: Path) -> Iterator[str]:
    path = write_config(folder / "config.yaml", config_data(f"sqlite:///{folder / 's.db'}"))
    with gateway_process(path) as url:
        yield url


def test_the_seeds_send_v2_gets_code_0_byte_for_byte(gateway: str) -> None:
    url = gateway + "/alarm_v2"
    # The seed's example code, unchanged but for the URL (and the example group's id and level).
    data = {
        "id": "chenmin",
        "level": "3",
        "dep": "du-srv",
        "env": "prod",
        "alert_level": "高",
        "alert_time": "2018-01-1 01:01:01",
        "alert_business": "陈敏测试alert_business",
        "alert_function": "陈敏测试alert_function",
        "exception_spec": "陈敏测试之异常说明",
    }

    def send_v2(data: Any) -> requests.Response:
        data_sign = OrderedDict(sorted(data.items(), key=lambda x: x[0]))
        sign_string_a = "".join(data_sign.values())
        sign_string_b = hashlib.md5(sign_string_a.encode("utf-8"))  # noqa: S324
        sign_string_b.update("YYLmfY6IRdjZMQ1".encode("utf-8"))  # noqa: UP012
        data.setdefault("sign", sign_string_b.hexdigest())
        data = json.dumps(data)
        resp = requests.post(url, data=data, timeout=10)
        return resp

    resp = send_v2(data)
    assert resp.status_code == 200
    assert resp.text == '{"code": 0}'


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=30)


def test_send_command_prints_0_then_1010(gateway: str) -> None:
    fields = ["id=chenmin", "level=3", "dep=du-op", "env=pre", "alert_level=中", "alert_time=2018-09-11 19:24:45",
              "alert_business=du_dna_servers", "alert_host=du-ftp-qd-2"]  # fmt: skip
    first = run_cli("send", "--url", gateway + "/alarm_v2", "--secret", SECRET, *fields)
    assert (first.returncode, first.stdout.strip()) == (0, '{"code": 0}')
    again = run_cli("send", "--url", gateway + "/alarm_v2", "--secret", SECRET, *fields)
    assert again.returncode == 1
    assert json.loads(again.stdout)["code"] == 1010


def test_send_command_reads_a_json_file(gateway: str, tmp_path: Path) -> None:
    alarm = {"id": "chenmin", "level": "3", "dep": "du-fe", "env": "dev", "alert_level": "低",
             "alert_time": "2018-09-11 19:24:45", "alert_business": "from a file"}  # fmt: skip
    path = tmp_path / "alarm.json"
    path.write_text(json.dumps(alarm, ensure_ascii=False), encoding="utf-8")
    result = run_cli("send", "--url", gateway + "/alarm_v2", "--secret", SECRET, "--json", str(path))
    assert (result.returncode, result.stdout.strip()) == (0, '{"code": 0}')
    wrong = run_cli("send", "--url", gateway + "/alarm_v2", "--secret", "nope", "--json", str(path))
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["code"] == 2000


def test_send_command_explains_an_unreachable_gateway() -> None:
    result = run_cli("send", "--url", "http://127.0.0.1:9/alarm_v2", "--secret", SECRET, "id=x")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr


def test_dry_run_log_shows_the_seed_layout(tmp_path: Path) -> None:
    fields = ["id=chenmin", "level=3", "dep=du-da", "env=prod", "alert_level=高", "alert_time=2018-01-1 01:01:01",
              "alert_business=陈敏测试alert_business", "exception_spec=陈敏测试之异常说明"]  # fmt: skip
    for url in _serve(tmp_path):
        assert run_cli("send", "--url", url + "/alarm_v2", "--secret", SECRET, *fields).returncode == 0
    log = "".join(p.read_text(encoding="utf-8") for p in tmp_path.glob("config.*.log"))
    expected = (
        "部门:du-da\n环境:prod\n告警业务:陈敏测试alert_business\n告警等级:高\n"
        "告警时间:2018-01-1 01:01:01\n异常说明:陈敏测试之异常说明"
    )
    assert expected in log
