"""rules/*.yaml: Alertmanager matchers, route order with continue and the fallback, and every field mapping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import rules
from bridge.ingest import alertmanager, payload
from bridge.ingest.alerts import alarms as to_alarms
from bridge.matchers import parse_matchers
from bridge.model import Alarm
from bridge.schema import ConfigError
from tests.helpers import make_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity="critical"', [("severity", "=", "critical")]),
        ("severity=critical", [("severity", "=", "critical")]),
        ('  team != "db" ', [("team", "!=", "db")]),
        ('severity=~"critical|warning"', [("severity", "=~", "critical|warning")]),
        ('env!~"dev|test"', [("env", "!~", "dev|test")]),
        ('{a="1", b!="2",c=~"3.*"}', [("a", "=", "1"), ("b", "!=", "2"), ("c", "=~", "3.*")]),
        ('msg="x, y"', [("msg", "=", "x, y")]),
        (r'msg="say \"hi\" \\ bye"', [("msg", "=", 'say "hi" \\ bye')]),
        ('empty=""', [("empty", "=", "")]),
        (r'v="a\tb", w=~"\w+\\\\"', [("v", "=", "a\\tb"), ("w", "=~", "\\w+\\\\")]),  # only \" \n \\ are escapes
        ("__name__:x=y", [("__name__:x", "=", "y")]),
    ],
)
def test_matchers_parse_as_alertmanager_writes_them(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(m.name, m.op, m.value) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize(
    "text", ["severity", "a~b", '1a="x"', 'a=~"("', 'a="unterminated', "", "{}", 'a=b"c', 'a="b"c"', r'a="b\\"c"']
)
def test_invalid_matchers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_matchers(text)


@pytest.mark.parametrize(
    ("matcher", "labels", "matches"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "Critical"}, False),
        ('severity="critical"', {}, False),
        ('severity=""', {}, True),  # a missing label is the empty string
        ('severity!="critical"', {"severity": "warning"}, True),
        ('severity!="critical"', {"severity": "critical"}, False),
        ('severity!="critical"', {}, True),
        ('severity=~"crit|warn"', {"severity": "crit"}, True),
        ('severity=~"crit|warn"', {"severity": "critical"}, False),  # anchored at both ends
        ('severity=~"crit.*"', {"severity": "critical"}, True),
        ('severity=~".*"', {}, True),
        ('severity=~".+"', {}, False),
        ('severity!~"crit|warn"', {"severity": "critical"}, True),
        ('severity!~"crit|warn"', {"severity": "warn"}, False),
        ('severity!~""', {}, False),
        ('team!~"|db"', {"team": "web"}, True),
        ('team!~"|db"', {}, False),
        ('msg=~"a.b"', {"msg": "a\nb"}, False),  # Alertmanager compiles ^(?:a.b)$: . is not a newline
        (r'instance=~"db\d+:9100"', {"instance": "db12:9100"}, True),  # \d is the regex's, not an escape
        (r'instance=~"db\d+:9100"', {"instance": "dbd:9100"}, False),
        (r'host=~"a\.b"', {"host": "axb"}, False),
        (r'msg="line\nnext"', {"msg": "line\nnext"}, True),
    ],
)
def test_each_operator_matches_as_in_alertmanager(matcher: str, labels: dict[str, str], matches: bool) -> None:
    (parsed,) = parse_matchers(matcher)
    assert parsed.matches(labels) is matches


def test_a_matcher_prints_back_as_it_parses() -> None:
    (matcher,) = parse_matchers(r'msg="a \"b\" \\ c"')
    assert parse_matchers(str(matcher)) == [matcher]


RULES: dict[str, Any] = {
    "defaults": {"target": {"dep": "du-op", "env": "prod"}},
    "routes": [
        {"name": "db", "matchers": ['team="db"'], "target": {"id": "dba", "level": 1}},
        {"name": "copy", "matchers": ['severity="critical"'], "continue": True, "target": {"id": "oncall", "level": 2}},
        {"name": "critical", "matchers": ['severity=~"critical|page"'], "target": {"id": "sre", "level": 1}},
        {"name": "web", "matchers": ['team="web"', 'env!="dev"'], "target": {"id": "web", "level": 3}},
        {"name": "also", "matchers": ['team="web"'], "continue": True, "target": {"id": "webteam", "level": 1}},
    ],
    "fallback": {"target": {"id": "ops", "level": 9}},
}


@pytest.mark.parametrize(
    ("labels", "routes"),
    [
        ({"team": "db", "severity": "critical"}, ["db"]),  # the first match wins
        ({"severity": "critical"}, ["copy", "critical"]),  # continue: the next match too
        ({"severity": "page"}, ["critical"]),
        ({"team": "web", "env": "prod"}, ["web"]),  # every matcher of a route must match
        ({"team": "web", "env": "dev"}, ["also"]),  # a match with continue and nothing after: no fallback
        ({"team": "other"}, ["fallback"]),
        ({}, ["fallback"]),
    ],
)
def test_routes_are_tried_in_order(labels: dict[str, str], routes: list[str]) -> None:
    ruleset = rules.parse(RULES, "r.yaml", "r")
    assert [r.name for r in ruleset.match(labels)] == routes


def notification(*alerts: dict[str, Any], **top: Any) -> payload.Notification:
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "bridge",
        "groupKey": '{}:{alertname="X"}',
        "externalURL": "http://am.example:9093",
        "alerts": [
            {"status": "firing", "startsAt": "2026-01-02T03:04:05.123456789Z", "endsAt": "0001-01-01T00:00:00Z", **a}
            for a in alerts
        ],
        **top,
    }
    parsed = payload.parse(json.dumps(body).encode())
    assert isinstance(parsed, payload.Notification), parsed
    return parsed


def produce(data: dict[str, Any], *alerts: dict[str, Any], **settings: Any) -> list[Alarm]:
    ruleset = rules.parse(data, "r.yaml", "r")
    am = make_settings("sqlite:///unused.db", alertmanager=settings).alertmanager
    return to_alarms(notification(*alerts), ruleset, am)


ONE_ROUTE: dict[str, Any] = {"fallback": {"target": {"id": "ops", "level": "1"}}}


def one(
    labels: dict[str, str], annotations: dict[str, str] | None = None, rules_data: Any = None, **alert: Any
) -> Alarm:
    (alarm,) = produce(rules_data or ONE_ROUTE, {"labels": labels, "annotations": annotations or {}, **alert})
    return alarm


@pytest.mark.parametrize(
    ("severity", "level"),
    [("critical", "高"), ("warning", "中"), ("info", "低"), ("error", "高"), ("CRITICAL", "高"), ("odd", "中"),
     (None, "中")],
)  # fmt: skip
def test_alert_level_comes_from_severity_through_the_default_table(severity: str | None, level: str) -> None:
    labels = {"alertname": "X"} | ({"severity": severity} if severity else {})
    assert one(labels).alert_level == level


def test_the_level_table_its_default_and_the_severity_source_can_be_changed() -> None:
    data = {"defaults": {"levels": {"P1": "高", "warning": "低"}, "default_level": "低",
                         "fields": {"severity": ["label:priority", "label:severity"]}},
            "fallback": {"target": {"id": "ops", "level": "1"}}}  # fmt: skip
    assert one({"priority": "p1"}, rules_data=data).alert_level == "高"
    assert one({"severity": "warning"}, rules_data=data).alert_level == "低"
    assert one({"severity": "critical"}, rules_data=data).alert_level == "高"  # the rest of the defaults stay
    assert one({"severity": "unknown"}, rules_data=data).alert_level == "低"


@pytest.mark.parametrize(
    ("field", "labels", "annotations", "expected"),
    [
        ("alert_business", {"alertname": "DiskFull"}, {}, "DiskFull"),
        ("alert_business", {}, {}, "Alertmanager"),
        ("alert_host", {"instance": "db1:9100"}, {}, "db1:9100"),
        ("alert_ip", {"ip": "10.0.0.1"}, {}, "10.0.0.1"),
        ("alert_function", {"job": "node"}, {}, "node"),
        ("exception_spec", {}, {"summary": "disk full", "description": "long text"}, "disk full"),
        ("exception_spec", {}, {"description": "long text"}, "long text"),
        ("exception_spec", {}, {"message": "msg"}, "msg"),
        ("notes", {}, {"runbook_url": "http://wiki/rb"}, "http://wiki/rb"),
        ("others", {"x": "y"}, {}, ""),
        ("dep", {}, {}, ""),
        ("env", {}, {}, ""),
    ],
)
def test_each_field_has_a_default_source(field: str, labels: dict[str, str], annotations: dict[str, str],
                                         expected: str) -> None:  # fmt: skip
    assert getattr(one(labels, annotations), field) == expected


def test_status_comes_from_firing_or_resolved_through_a_table() -> None:
    assert one({}).status == "告警中"
    resolved: dict[str, Any] = {"status": "resolved", "endsAt": "2026-01-02T04:04:05Z"}
    assert one({}, **resolved).status == "已恢复"
    data = {"defaults": {"statuses": {"resolved": "OK"}}, "fallback": {"target": {"id": "o", "level": "1"}}}
    assert one({}, rules_data=data, **resolved).status == "OK"
    assert one({}, rules_data=data).status == "告警中"


def test_alert_time_is_the_start_in_the_display_timezone() -> None:
    alarm = one({})
    assert alarm.alert_time == "2026-01-02 11:04:05"  # Asia/Shanghai by default
    (utc,) = produce(ONE_ROUTE, {"labels": {}}, timezone="UTC")
    assert utc.alert_time == "2026-01-02 03:04:05"


def test_fields_and_targets_map_from_labels_annotations_or_text_first_value_wins() -> None:
    data = {
        "routes": [{
            "matchers": ['alertname=~".+"'],
            "target": {"id": ["label:owner", "text:nobody"], "level": 2, "dep": "label:dep", "env": "text:pre"},
            "fields": {"alert_host": ["label:pod", "label:instance"], "others": "annotation:extra",
                       "alert_business": "text:label:literal", "exception_spec": []},
        }],
        "fallback": {"target": {"id": "ops", "level": "1"}},
    }  # fmt: skip
    alarm = one({"alertname": "A", "owner": "zhang", "dep": "du-da", "instance": "i1"}, {"extra": "E", "summary": "S"},
                rules_data=data)  # fmt: skip
    assert (alarm.id, alarm.level, alarm.dep, alarm.env) == ("zhang", "2", "du-da", "pre")
    assert (alarm.alert_host, alarm.others, alarm.alert_business, alarm.exception_spec) == (
        "i1",
        "E",
        "label:literal",
        "",
    )
    assert one({"alertname": "A", "pod": "p1"}, rules_data=data).id == "nobody"
    assert one({"alertname": "A", "pod": "p1"}, rules_data=data).alert_host == "p1"


def test_a_route_overrides_the_defaults_key_by_key() -> None:
    data = {
        "defaults": {"target": {"id": "d", "level": "1", "dep": "du-op"}, "fields": {"notes": "text:default note"}},
        "routes": [{"matchers": ["a=1"], "target": {"level": "5"}, "fields": {"others": "text:mine"}}],
        "fallback": {},
    }
    alarm = one({"a": "1"}, rules_data=data)
    assert (alarm.id, alarm.level, alarm.dep, alarm.notes, alarm.others) == ("d", "5", "du-op", "default note", "mine")
    fallback = one({"a": "2"}, rules_data=data)
    assert (fallback.id, fallback.level, fallback.others) == ("d", "1", "")


def test_mentions_come_from_a_label_or_annotation() -> None:
    alarm = one({"mention_userids": "zhang,li"}, {"mention_mobiles": "13800000000 13900000000"})
    assert alarm.extra["mentions"] == {"mobiles": ["13800000000", "13900000000"], "userids": ["zhang", "li"]}
    data = {"defaults": {"mentions": {"mobiles": "label:oncall"}}, "fallback": {"target": {"id": "o", "level": "1"}}}
    assert one({"oncall": "137"}, rules_data=data).extra["mentions"]["mobiles"] == ["137"]


def test_alerts_of_one_notification_on_one_route_make_one_alarm_with_the_highest_level() -> None:
    alerts: list[dict[str, Any]] = [
        {"labels": {"alertname": "Disk", "instance": f"h{i}", "severity": s}, "annotations": {"summary": f"s{i}"}}
        for i, s in enumerate(["info", "critical", "warning", "info", "info"])
    ]
    alerts[1] |= {"status": "resolved", "endsAt": "2026-01-02T04:04:05Z"}
    (alarm,) = produce(ONE_ROUTE, *alerts)
    assert alarm.alert_level == "中"  # the highest among the firing ones
    assert alarm.alert_business == "Disk"
    assert alarm.alert_host == "h2, h0, h3 等 4 个"  # the firing ones, highest level first
    assert alarm.extra["counts"] == {"firing": 4, "resolved": 1}
    assert [a["host"] for a in alarm.extra["firing"]] == ["h2", "h0", "h3", "h4"]
    assert [a["host"] for a in alarm.extra["resolved"]] == ["h1"]
    assert alarm.extra["resolved"][0]["duration"] == "59m59s"


def test_per_alert_mode_and_routes_to_several_groups_give_several_alarms() -> None:
    alerts = [{"labels": {"alertname": "A", "team": t, "instance": str(i)}} for i, t in enumerate(("db", "web", "db"))]
    grouped = produce(RULES, *alerts)
    assert sorted((a.id, a.extra["counts"]["firing"]) for a in grouped) == [("dba", 2), ("web", 1)]
    per_alert = produce(RULES, *alerts, per_alert=True)
    assert sorted(a.id for a in per_alert) == ["dba", "dba", "web"]
    assert len({a.identity for a in per_alert}) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"routes": []}, "r.yaml: fallback: is required"),
        ({"fallback": {"target": {"level": "1"}}}, "r.yaml: fallback.target.id: is required"),
        ({"fallback": {"target": {"id": "o", "level": "1"}}, "route": []}, "r.yaml: route: unknown key"),
        ({"fallback": {"target": {"id": "o", "level": "1", "owner": "x"}}}, "r.yaml: fallback.target.owner: unknown"),
        ({"fallback": {"target": {"id": "o", "level": "1"}}, "routes": [{"target": {"id": "a", "level": "1"}}]},
         "r.yaml: routes[0].matchers: is required"),
        ({"fallback": {"target": {"id": "o", "level": "1"}}, "routes": [{"matchers": ['a=~"("']}]},
         "r.yaml: routes[0].matchers[0]: 'a=~\"(\"': invalid regular expression"),
        ({"fallback": {"target": {"id": "o", "level": "1"}}, "routes": [{"matchers": "a=1", "continue": "yes"}]},
         "r.yaml: routes[0].continue: expected true or false"),
        ({"fallback": {"target": {"id": "o", "level": "1"}, "levels": {"critical": "high"}}},
         "r.yaml: fallback.levels.critical: expected one of 高, 中, 低"),
        ({"defaults": {"fields": {"alert_host": "label:"}}, "fallback": {"target": {"id": "o", "level": "1"}}},
         "r.yaml: defaults.fields.alert_host: 'label:': name the label"),
        ({"defaults": {"fields": {"hostname": "label:x"}}, "fallback": {"target": {"id": "o", "level": "1"}}},
         "r.yaml: defaults.fields.hostname: unknown key"),
        ({"defaults": {"statuses": {"pending": "x"}}, "fallback": {"target": {"id": "o", "level": "1"}}},
         "r.yaml: defaults.statuses.pending: unknown key"),
        ({"fallback": {"target": {"id": "o", "level": "1"}, "continue": True}}, "r.yaml: fallback.continue: unknown"),
    ],
)  # fmt: skip
def test_invalid_rules_name_the_file_and_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        rules.parse(data, "r.yaml", "r")
    assert str(error.value).startswith(message), str(error.value)


def test_a_folder_loads_every_yaml_file_by_name(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(ONE_ROUTE))
    (tmp_path / "db-team.yaml").write_text(yaml.safe_dump(RULES))
    (tmp_path / "notes.txt").write_text("not rules")
    assert sorted(rules.load(tmp_path)) == ["db-team", "default"]
    assert rules.load(tmp_path / "missing") == {}
    (tmp_path / "broken.yaml").write_text("fallback: [")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        rules.load(tmp_path)


def test_the_shipped_example_rules_are_valid() -> None:
    example = rules.load(REPO / "rules")["default"]
    assert [r.name for r in example.match({"alertname": "Watchdog", "team": "web"})] == [
        "production-watchdog-copies",
        "per-team",
    ]


def test_rules_test_prints_the_routes_and_the_alarm(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(RULES))
    command = [sys.executable, "-m", "bridge", "rules", "test", str(path), "severity=critical", "alertname=Disk",
               "--annotation", "summary=disk full", "--timezone", "UTC"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f'{{alertname="Disk", severity="critical"}} takes 2 route(s) of {path}' in result.stdout
    assert "route 'copy' -> group oncall/2" in result.stdout
    assert "route 'critical' -> group sre/1" in result.stdout
    assert "  alert_level: 高\n" in result.stdout and "  exception_spec: disk full\n" in result.stdout
    path.write_text("routes: []")
    result = subprocess.run([*command[:6], "a=b"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 2
    assert "fallback: is required" in result.stderr


def test_check_validates_rules_and_the_time_zone(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(ONE_ROUTE))
    settings = make_settings("sqlite:///unused.db", alertmanager={"rules": str(tmp_path)})
    assert list(alertmanager.check(settings)) == ["default"]
    with pytest.raises(ConfigError, match=r"alertmanager\.timezone: unknown time zone 'Mars/Base'"):
        alertmanager.check(make_settings("sqlite:///unused.db", alertmanager={"timezone": "Mars/Base"}))
