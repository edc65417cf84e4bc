"""alarm-bridge render and deliveries: exactly what each target would be sent, and the outbox as the store holds it."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from bridge import cli
from bridge.store import Admission, Job, State
from bridge.store.sqlite import SqliteStore
from tests.helpers import TEMPLATES, config_data, seed_alarm, write_config


def test_render_prints_exactly_what_each_target_is_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = config_data(f"sqlite:///{tmp_path / 's.db'}")
    data["groups"][0] |= {"mention": "members", "members": [{"name": "陈敏", "mobile": "13800000000"}]}
    config = write_config(tmp_path / "c.yaml", data)
    (tmp_path / "alarm.json").write_text(json.dumps(seed_alarm()), encoding="utf-8")
    assert cli.main(["render", "--config", str(config), str(tmp_path / "alarm.json")]) == 0
    heading, shown = capsys.readouterr().out.split("\n", 1)
    assert heading == "=== dingtalk-robot …x (text, 1 message(s)) ==="
    body = json.loads(shown)  # the robot's request body: no title (a text robot gets none), the mentions it gets
    assert body["text"]["content"].startswith("部门:du-srv\n") and body["text"]["content"].endswith("@13800000000")
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": []} and "title" not in shown


def test_render_shows_a_feishu_targets_card_body(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = config_data(f"sqlite:///{tmp_path / 's.db'}")
    data["groups"][0] |= {
        "format": "markdown",
        "channels": [
            {"type": "feishu-robot", "webhook": "https://open.larksuite.com/open-apis/bot/v2/hook/t", "keyword": "告警"}
        ],
    }
    config = write_config(tmp_path / "c.yaml", data)
    (tmp_path / "alarm.json").write_text(json.dumps(seed_alarm()), encoding="utf-8")
    assert cli.main(["render", "--config", str(config), str(tmp_path / "alarm.json")]) == 0
    heading, shown = capsys.readouterr().out.split("\n", 1)
    assert heading == "=== feishu-robot …t (markdown, 1 message(s)) ==="
    card = json.loads(shown)["card"]
    assert card["header"]["title"]["content"] == "【高】陈敏测试alert_business"
    assert card["elements"][0]["text"]["content"].startswith("**陈敏测试alert_business**")
    assert cli.main(["check-config", str(config)]) == 0


def test_render_exits_1_naming_a_shipped_template_that_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "native" / "text.j2").write_text("{{ alarm.no_such_field }}", encoding="utf-8")
    data = config_data(f"sqlite:///{tmp_path / 's.db'}", templates=str(tmp_path / "templates"))
    config = write_config(tmp_path / "c.yaml", data)
    (tmp_path / "alarm.json").write_text(json.dumps(seed_alarm()), encoding="utf-8")
    assert cli.main(["render", "--config", str(config), str(tmp_path / "alarm.json")]) == 1
    assert "dingtalk-robot …x: template native/text.j2 failed" in capsys.readouterr().err


def test_deliveries_says_when_the_store_is_unavailable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", config_data("redis://127.0.0.1:1/0"))
    assert cli.main(["deliveries", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alarm-bridge: the store is unavailable: ") and "Traceback" not in err


def test_deliveries_lists_a_job_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", config_data(f"sqlite:///{tmp_path / 's.db'}"))

    async def damage() -> None:
        store = SqliteStore(str(tmp_path / "s.db"), history=100)
        try:
            damaged = Job(id="damaged:5", payload="{", created=1.0, state=State.DEAD, detail="cannot be read")
            await store.admit([Admission([damaged])], lease=0.0)
            await store.settle([damaged])
        finally:
            await store.close()

    asyncio.run(damage())
    assert cli.main(["deliveries", "--config", str(config), "--failed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("damaged:5  dead ") and "?/? unreadable  cannot be read" in out
