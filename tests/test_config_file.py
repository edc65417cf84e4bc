"""Reading the config file: typed settings from one YAML file, ${ENV} secrets, and errors that name the file and the
key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge import config_file
from bridge.model import DingTalkRobot, Email, FeishuRobot, Format
from bridge.upstreams import RateLimit
from tests.helpers import config_data, config_error, write_config

EXAMPLE = Path(__file__).resolve().parent.parent / "alarm-bridge.example.yaml"


def test_the_example_config_is_the_seeds_setup() -> None:
    settings = config_file.load(EXAMPLE)
    assert settings.native.departments == dict.fromkeys(("du-srv", "du-op", "du-fe", "du-da"), "YYLmfY6IRdjZMQ1")
    assert settings.native.environments == {"prod", "pre", "dev"}
    assert settings.delivery.dry_run is True
    assert settings.store.url == f"sqlite:///{EXAMPLE.parent / 'data/alarm-bridge.db'}"
    assert [g.key for g in settings.groups] == [("chenmin", "3")]


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_SECRET", "s3cr3t")
    data = config_data("sqlite:///x.db")
    data["native"]["departments"] = {"du-op": {"secret": "${OP_SECRET}"}, "du-fe": {"secret": "${FE:-fallback}"}}
    settings = config_file.parse(data, "site.yaml")
    assert settings.native.departments == {"du-op": "s3cr3t", "du-fe": "fallback"}


def test_a_missing_environment_variable_is_named_with_its_key() -> None:
    data = config_data("sqlite:///x.db")
    data["native"]["departments"] = {"du-op": {"secret": "${NO_SUCH_VARIABLE_HERE}"}}
    message = config_error(data)
    assert message.startswith("site.yaml: native.departments.du-op.secret:")
    assert "NO_SUCH_VARIABLE_HERE" in message


@pytest.mark.parametrize(
    ("change", "where", "expected"),
    [
        ({"dedup_window": "five minutes"}, "dedup_window", "duration"),
        ({"store": {"url": "mysql://x"}}, "store.url", "sqlite:///PATH, redis://HOST:PORT/DB or redis+sentinel://"),
        ({"store": {"timeout": True}}, "store.timeout", "duration"),
        ({"store": {"url": "redis+sentinel://s1/mymaster/0"}}, "store.url", "'s1' is not HOST:PORT of a Sentinel"),
        ({"store": {"url": "redis+sentinel://s1:26379,s2:26379"}}, "store.url", "the primary's name"),
        ({"store": {"url": "redis+sentinel://s1:26379/mymaster/zero"}}, "store.url", "a database number"),
        ({"store": {"min_replicas": 1}}, "store.min_replicas", "only a Redis store has replicas"),
        ({"store": {"url": "redis://r:6379/0", "min_replicas": -1}}, "store.min_replicas", ">= 0"),
        ({"native": {"max_body_bytes": "big"}}, "native.max_body_bytes", "integer"),
        ({"native": {"environments": "prod"}}, "native.environments", "list of strings"),
        ({"delivery": {"dry_run": "yes"}}, "delivery.dry_run", "true or false"),
        ({"colour": 1}, "colour", "unknown key"),
        ({"groups": [{"level": "3"}]}, "groups[0].id", "required"),
        ({"groups": [{"id": "a", "level": "1", "format": "html"}]}, "groups[0].format", "text, markdown"),
        ({"groups": [{"id": "a", "level": "1", "channels": [{"type": "fax"}]}]},
         "groups[0].channels[0].type", "one of"),
        ({"groups": [{"id": "a", "level": "1", "channels": [{"type": "dingtalk-robot"}]}]},
         "groups[0].channels[0].webhook", "required"),
        ({"groups": [{"id": "a", "level": "1", "members": [{"name": "x", "phone": "1"}]}]},
         "groups[0].members[0].phone", "unknown key"),
        ({"delivery": {"rate_limits": {"wecom-app": []}}}, "delivery.rate_limits.wecom-app", "a list of them"),
        ({"delivery": {"rate_limits": {"wecom-app": [{"limit": 0}]}}}, "delivery.rate_limits.wecom-app[0].limit",
         ">= 1"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_key_and_what_is_expected(change: dict[str, Any], where: str, expected: str) -> None:
    data = config_data("sqlite:///x.db")
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    message = config_error(data)
    assert message.startswith(f"site.yaml: {where}:"), message
    assert expected in message


def test_duplicate_groups_are_refused() -> None:
    data = config_data("sqlite:///x.db", groups=[{"id": "a", "level": 1}, {"id": "a", "level": "1"}])
    assert "duplicate group id='a' level='1'" in config_error(data)


def test_groups_read_every_part() -> None:
    group = {
        "id": "chenmin",
        "level": 3,
        "format": "markdown",
        "dedup_window": "10m",
        "channels": [{"type": "dingtalk-robot", "webhook": "https://r/x", "secret": "SEC"}, {"type": "email"}],
        "templates": {"native/text.j2": "{{ alarm.id }}"},
    }
    (parsed,) = config_file.parse(config_data("sqlite:///x.db", groups=[group]), "site.yaml").groups
    assert parsed.level == "3"
    assert parsed.format is Format.MARKDOWN
    assert parsed.dedup_window == 600.0
    assert parsed.targets == (DingTalkRobot(webhook="https://r/x", secret="SEC"), Email())
    assert parsed.source == "site.yaml (groups[0])"


def test_the_example_config_for_the_local_fakes_is_valid() -> None:
    settings = config_file.load(EXAMPLE.with_name("alarm-bridge.fakes.yaml"))
    assert settings.delivery.dry_run is False
    assert {t.kind for t in settings.groups[0].targets} == {
        "dingtalk-robot", "dingtalk-app", "wecom-app", "wecom-appchat", "wecom-robot", "feishu-robot", "feishu-app",
        "email",
    }  # fmt: skip


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", str(path)], capture_output=True, text=True, timeout=30
    )


def test_check_config_exits_non_zero_on_any_error(tmp_path: Path) -> None:
    ok = check_config(EXAMPLE)
    assert ok.returncode == 0
    assert ok.stdout == f"{EXAMPLE}: ok (4 departments, 1 group, 1 ruleset)\n"
    bad = write_config(tmp_path / "bad.yaml", config_data("sqlite:///x.db", dedup_window="soon"))
    result = check_config(bad)
    assert result.returncode == 1
    assert f"{bad}: dedup_window:" in result.stderr
    (tmp_path / "broken.yaml").write_text("store: [unclosed", encoding="utf-8")
    assert "not valid YAML" in check_config(tmp_path / "broken.yaml").stderr
    assert check_config(tmp_path / "missing.yaml").returncode == 1


def test_rate_limits_are_one_window_or_several_and_replace_the_types_defaults() -> None:
    data = config_data("sqlite:///x.db")
    app = [{"limit": 5, "window": "1m"}, {"limit": 100, "window": "1h"}]
    data["delivery"] = {"rate_limits": {"dingtalk-robot": {"limit": 10}, "wecom-app": app}}
    limits = config_file.parse(data, "site.yaml").delivery.rate_limits
    assert limits["dingtalk-robot"] == (RateLimit(10, 62.0),)  # the default window
    assert limits["wecom-app"] == (RateLimit(5, 60.0), RateLimit(100, 3600.0))
    # WeCom drops what an app sends a member beyond 30 a minute and 1,000 an hour (an app chat: 200 and 10,000 a day)
    assert limits["wecom-appchat"] == (RateLimit(200, 62.0), RateLimit(10_000, 86_402.0))


def test_a_channel_naming_an_app_that_does_not_exist_is_refused_at_load() -> None:
    data = config_data("sqlite:///s.db")
    data["wecom"] = {"apps": {"ops": {"corpid": "c", "corpsecret": "s", "agentid": 1}}}
    data["groups"][0]["channels"] = [{"type": "wecom-appchat", "app": "opz"}]
    message = config_error(data)
    assert message == "site.yaml: groups[0].channels[0].app: no wecom app named 'opz' (known: ops)"
    data["groups"][0]["channels"] = [{"type": "dingtalk-app", "app": "corp"}]
    assert config_error(data).endswith("no dingtalk app named 'corp' (known: none: add it under dingtalk.apps)")
    data["groups"][0]["channels"] = [{"type": "feishu-app", "app": "corp", "chat_id": "oc_1"}]
    assert config_error(data).endswith("no feishu app named 'corp' (known: none: add it under feishu.apps)")


def test_feishu_bots_on_feishu_or_lark_and_apps_load_with_their_settings() -> None:
    data = config_data("sqlite:///s.db", feishu={"base_url": "https://open.larksuite.com/",
                                                 "apps": {"ops": {"app_id": "cli_1", "app_secret": "s"}}})  # fmt: skip
    lark = "https://open.larksuite.com/open-apis/bot/v2/hook/t"
    data["groups"][0]["members"] = [{"name": "a", "feishu_userid": "ou_a"}]
    data["groups"][0]["channels"] = [
        {"type": "feishu-robot", "webhook": "https://open.feishu.cn/open-apis/bot/v2/hook/t", "keyword": "告警"},
        {"type": "feishu-robot", "webhook": lark, "secret": "s"},
        {"type": "feishu-app", "app": "ops", "chat_id": "oc_1"},
    ]
    settings = config_file.parse(data, "site.yaml")
    assert settings.feishu.base_url == "https://open.larksuite.com"
    assert settings.feishu.apps["ops"].app_secret == "s"
    assert settings.groups[0].targets[1] == FeishuRobot(webhook=lark, secret="s")
    assert settings.delivery.rate_limits["feishu-robot"] == (RateLimit(5, 3.0), RateLimit(100, 62.0))
    data["groups"][0]["channels"] = [{"type": "feishu-app", "app": "ops"}]
    assert config_error(data) == "site.yaml: groups[0].channels[0].chat_id: is required"
    data["groups"][0]["channels"] = [{"type": "feishu-robot", "webhook": lark, "keywords": ["a"]}]
    assert "groups[0].channels[0].keywords: unknown key" in config_error(data)
