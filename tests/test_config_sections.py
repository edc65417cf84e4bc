"""The config's sections beyond plain values: template and rules folders relative to the file, CA certificates that
must load, password hashes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from bridge import config_file
from bridge.config_sections import SHIPPED_RULES, SHIPPED_TEMPLATES
from bridge.model import Alarm
from bridge.web.auth import hash_password
from tests.helpers import config_data, config_error, seed_alarm

ROOT = Path(__file__).resolve().parent.parent
SEED_ALARM = Alarm.from_fields({k: v for k, v in seed_alarm().items() if k != "sign"})


def test_templates_that_cannot_render_every_message_are_refused(tmp_path: Path) -> None:
    assert config_error(config_data("sqlite:///x.db", templates=str(tmp_path / "none"))) == (
        f"site.yaml: templates: {tmp_path / 'none'} is not a directory"
    )
    (tmp_path / "t" / "alertmanager").mkdir(parents=True)
    (tmp_path / "t" / "alertmanager" / "title.j2").write_text("{{ alarm.id ", encoding="utf-8")
    message = config_error(config_data("sqlite:///x.db", templates=str(tmp_path / "t")))
    assert message.startswith(f"site.yaml: templates: {tmp_path / 't'}: alertmanager/title.j2: TemplateSyntaxError")


def test_a_config_anywhere_uses_the_shipped_templates_and_rules_under_its_own(tmp_path: Path) -> None:
    """An installed package has no checkout beside the config: the templates and rules it ships are used, and a
    templates folder beside the config overrides them file by file."""
    data = config_data("sqlite:///x.db")
    del data["templates"]
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    settings = config_file.parse(data, str(elsewhere / "site.yaml"))
    assert settings.renderer.directories == (SHIPPED_TEMPLATES,)
    assert settings.alertmanager.rules == SHIPPED_RULES and (SHIPPED_RULES / "default.yaml").is_file()
    group = settings.groups[0]
    shipped = settings.renderer.message(SEED_ALARM, group, group.targets[0].channel)[0]
    (elsewhere / "templates" / "native").mkdir(parents=True)
    (elsewhere / "templates" / "native" / "text.j2").write_text("本地模板 {{ alarm.alert_business }}", encoding="utf-8")
    local = config_file.parse(data, str(elsewhere / "site.yaml"))
    assert local.renderer.directories == (elsewhere / "templates", SHIPPED_TEMPLATES)
    message = local.renderer.message(SEED_ALARM, group, group.targets[0].channel)[0]
    assert message.body == "本地模板 陈敏测试alert_business" and message.title == shipped.title  # the rest shipped


def test_the_built_package_carries_the_templates_and_rules(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("alarm_bridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"bridge/defaults/{p.relative_to(ROOT).as_posix()}" for p in ROOT.glob("templates/*/*.j2")}
    assert shipped and shipped <= names and "bridge/defaults/rules/default.yaml" in names


def test_ca_certificates_that_do_not_load_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate", encoding="utf-8")
    for name, why in (("none.pem", "No such file"), ("ca.pem", "no certificate")):
        message = config_error(config_data("sqlite:///x.db", delivery={"ca_file": name}), tmp_path / "site.yaml")
        assert message.startswith(f"{tmp_path / 'site.yaml'}: delivery.ca_file: cannot load {tmp_path / name} ")
        assert why in message


def test_a_rules_folder_that_is_named_must_exist(tmp_path: Path) -> None:
    data = config_data("sqlite:///x.db", alertmanager={"rules": "none"})
    message = config_error(data, tmp_path / "site.yaml")
    assert message == f"{tmp_path / 'site.yaml'}: alertmanager.rules: {tmp_path / 'none'} is not a directory"
    assert (
        config_file.parse(config_data("sqlite:///x.db"), str(tmp_path / "site.yaml")).alertmanager.rules.name == "rules"
    )


def test_a_password_written_as_it_is_in_web_users_is_refused() -> None:
    data = config_data("sqlite:///s.db")
    data["web"] = {"users": {"alice": "correct horse"}}
    assert config_error(data) == (
        "site.yaml: web.users.alice: not a password hash: write what `alarm-bridge hash-password` prints (scrypt$...)"
    )
    data["web"] = {"users": {"alice": hash_password("correct horse", n=2**10)}}
    assert config_file.parse(data, "site.yaml").web.users["alice"].startswith("scrypt$1024$")
