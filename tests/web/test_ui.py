"""The configuration page over HTTP: groups from forms, write-only secrets, validation, tests, alarms, the audit log."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.model import DingTalkRobot, FeishuApp, FeishuRobot, Group
from tests.channels._shared import assert_no_secret
from tests.helpers import seed_alarm, signed
from tests.web._web import (
    AUTH,
    ROBOT_SECRET,
    SECRETS,
    WEBHOOK,
    csrf_of,
    login,
    robot_form,
    sqlite_client,
    text_of,
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with sqlite_client(tmp_path) as c:
        yield c


def stored(client: TestClient, id: str = "ops", level: str = "1") -> Group | None:
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    group: Group | None = client.portal.call(store.get_group, id, level)  # type: ignore[union-attr]
    return group


def alarm_v2(client: TestClient, **changes: str) -> int:
    reply = client.post("/alarm_v2", content=json.dumps(signed(seed_alarm(**changes))))
    code: int = reply.json()["code"]
    return code


def field_error(page: str, field: str) -> str:
    """The message shown next to the form field ``field``."""
    match = re.search(rf'name="{re.escape(field)}"[^>]*>\s*<span class="field-error">([^<]*)</span>', page)
    return html.unescape(match[1]) if match else ""


def test_a_group_created_on_the_page_is_used_by_alarm_v2_at_once(client: TestClient) -> None:
    csrf = login(client)
    assert alarm_v2(client, id="ops", level="1") == 3001
    reply = client.post("/ui/groups/new", data=robot_form(csrf))
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/groups/ops/1?notice=created"
    assert alarm_v2(client, id="ops", level="1") == 0
    group = stored(client)
    assert group is not None and group.name == "运维组" and group.mention.value == "members"
    assert group.targets[0] == DingTalkRobot(webhook=WEBHOOK, secret=ROBOT_SECRET)
    assert [m.dingtalk_userid for m in group.members] == ["wangwei"]
    page = client.get(reply.headers["location"])
    assert "Group created." in page.text
    assert 'placeholder="https://oapi.dingtalk.com/robot/send?access_token=****"' in page.text
    assert 'placeholder="SEC****"' in page.text
    assert_no_secret(SECRETS, page.text)


def test_the_list_shows_every_group_and_searches(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    listing = text_of(client.get("/ui/groups").text)
    assert "chenmin 3 seed example" in listing and "config file" in listing
    assert "ops 1 运维组 dingtalk-robot email 1" in listing and "page" in listing
    assert "运维组" not in client.get("/ui/groups?q=chenmin").text
    assert "运维组" in client.get("/ui/groups?q=王伟").text


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"members-0-mail": "not-a-mail"}, "members-0-mail", "expected a mail address"),
        ({"members-0-name": ""}, "members-0-name", "is required"),
        ({"channels-0-webhook": ""}, "channels-0-webhook", "is required"),
        ({"channels-0-webhook": "ftp://robot"}, "channels-0-webhook", "http(s) URL"),
        ({"channels-0-type": "dingtalk-app", "channels-0-app": "nope"}, "channels-0-app", "no app 'nope'"),
        ({"channels-0-type": "dingtalk-app"}, "channels-0-app", "is required"),
        ({"channels-1-to": "a@b.c, broken"}, "channels-1-to", "expected mail addresses"),
        ({"dedup_window": "soon"}, "dedup_window", "expected a duration"),
        ({"id": "a/b"}, "id", "must not contain a slash"),
        ({"level": ""}, "level", "is required"),
        ({"template:native/text.j2": "{% if %}"}, "template:native/text.j2", "line 1"),
    ],
)
def test_validation_messages_stand_next_to_their_fields_and_nothing_is_saved(
    client: TestClient, changes: dict[str, str], field: str, message: str
) -> None:
    csrf = login(client)
    reply = client.post("/ui/groups/new", data=robot_form(csrf, **changes))
    assert reply.status_code == 400
    assert message in field_error(reply.text, field) or (
        field.startswith("template:") and message in text_of(reply.text)
    ), text_of(reply.text)[:2000]
    assert "Nothing was saved" in reply.text
    assert stored(client) is None
    assert_no_secret(SECRETS, reply.text)  # what was typed into secret fields is not shown again


def test_several_mistakes_are_all_shown(client: TestClient) -> None:
    csrf = login(client)
    form = robot_form(csrf, **{"members-0-mail": "x", "channels-1-to": "broken", "dedup_window": "soon"})
    reply = client.post("/ui/groups/new", data=form)
    assert all(field_error(reply.text, f) for f in ("members-0-mail", "channels-1-to", "dedup_window"))


def test_an_existing_group_cannot_be_created_again(client: TestClient) -> None:
    csrf = login(client)
    reply = client.post("/ui/groups/new", data=robot_form(csrf, id="chenmin", level="3"))
    assert reply.status_code == 400 and "already exists" in field_error(reply.text, "id")


def edit_form(client: TestClient, **changes: str) -> dict[str, str]:
    """The group's form as the page fills it in (secret fields empty), with changes."""
    page = client.get("/ui/groups/ops/1").text
    form = {}
    for tag in re.findall(r"<(?:input|select|textarea)[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or 'type="checkbox"' in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        form[name[1]] = value[1] if value else ""
    for select in re.finditer(r'<select name="([^"]+)"[^>]*>(.*?)</select>', page, re.DOTALL):
        chosen = re.search(r'<option value="([^"]*)" selected', select[2])
        form[select[1]] = chosen[1] if chosen else ""
    form = {k: v.replace("&amp;", "&") for k, v in form.items() if not k.startswith(("dep", "env", "alert_"))}
    return form | {"csrf": csrf_of(page)} | changes


def test_saving_with_empty_secret_fields_keeps_the_secrets(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    form = edit_form(client, name="新名字")
    assert form["channels-0-webhook"] == "" and form["channels-0-secret"] == ""
    reply = client.post("/ui/groups/ops/1", data=form)
    assert reply.status_code == 303 and reply.headers["location"].endswith("notice=saved")
    group = stored(client)
    assert group is not None and group.name == "新名字"
    assert group.targets[0] == DingTalkRobot(webhook=WEBHOOK, secret=ROBOT_SECRET)


def test_a_new_secret_replaces_the_old_and_clear_removes_it(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    new_hook = "https://oapi.dingtalk.com/robot/send?access_token=another-token-99"
    client.post("/ui/groups/ops/1", data=edit_form(client, **{"channels-0-webhook": new_hook}))
    group = stored(client)
    assert group is not None and group.targets[0] == DingTalkRobot(webhook=new_hook, secret=ROBOT_SECRET)
    client.post("/ui/groups/ops/1", data=edit_form(client, **{"channels-0-clear_secret": "1"}))
    group = stored(client)
    assert group is not None and group.targets[0] == DingTalkRobot(webhook=new_hook, secret="")


def test_a_removed_channel_before_a_robot_leaves_the_robots_secrets_in_place(client: TestClient) -> None:
    csrf = login(client)
    form = robot_form(csrf, **{"channels-0-type": "email", "channels-0-webhook": "", "channels-0-secret": "",
                               "channels-1-type": "dingtalk-robot", "channels-1-webhook": WEBHOOK,
                               "channels-1-secret": ROBOT_SECRET})  # fmt: skip
    client.post("/ui/groups/new", data=form)
    client.post("/ui/groups/ops/1", data=edit_form(client, **{"channels-0-remove": "1"}))
    group = stored(client)
    assert group is not None and group.targets == (DingTalkRobot(webhook=WEBHOOK, secret=ROBOT_SECRET),)


def test_members_are_added_and_removed(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    form = edit_form(client, **{"members-0-remove": "1", "members-1-name": "陈敏", "members-1-mobile": "13800000000"})
    assert client.post("/ui/groups/ops/1", data=form).status_code == 303
    group = stored(client)
    assert group is not None and [(m.name, m.mobile) for m in group.members] == [("陈敏", "13800000000")]


def test_saving_over_someone_elses_change_is_refused(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    form = edit_form(client, name="mine")
    theirs = client.get("/api/v1/groups/ops/1", headers=AUTH).json() | {"name": "theirs"}
    assert client.put("/api/v1/groups/ops/1", json=theirs, headers=AUTH).status_code == 200
    reply = client.post("/ui/groups/ops/1", data=form)
    assert reply.status_code == 409 and "your changes were not saved" in reply.text
    group = stored(client)
    assert group is not None and group.name == "theirs"


def test_of_saves_at_once_from_forms_opened_on_one_version_one_is_kept(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    forms = [edit_form(client, name=f"save {n}") for n in range(6)]  # all opened before any was saved
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda form: client.post("/ui/groups/ops/1", data=form), forms))
    codes = [r.status_code for r in replies]
    assert sorted(codes) == [303] + [409] * 5, codes
    assert all("your changes were not saved" in r.text for r in replies if r.status_code == 409)
    group = stored(client)
    assert group is not None and group.name == f"save {codes.index(303)}"


def test_saving_over_someone_elses_new_webhook_is_refused(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    form = edit_form(client, name="mine")  # made before the rotation: it would write the old token back
    rotated = "https://oapi.dingtalk.com/robot/send?access_token=rotated-token-42"
    theirs = client.get("/api/v1/groups/ops/1", headers=AUTH).json()
    theirs["channels"][0] |= {"webhook": rotated}
    assert client.put("/api/v1/groups/ops/1", json=theirs, headers=AUTH).status_code == 200
    assert client.post("/ui/groups/ops/1", data=form).status_code == 409
    group = stored(client)
    assert group is not None and group.targets[0] == DingTalkRobot(webhook=rotated, secret=ROBOT_SECRET)


def test_provisioned_groups_are_read_only_and_say_where_they_come_from(client: TestClient) -> None:
    csrf = login(client)
    page = client.get("/ui/groups/chenmin/3")
    assert "Provisioned from <code>test.yaml (groups[0])</code>" in page.text
    assert "<fieldset disabled>" in page.text and "Delete this group" not in page.text
    assert client.post("/ui/groups/chenmin/3", data={"csrf": csrf, "name": "x"}).status_code == 403
    assert client.post("/ui/groups/chenmin/3/delete", data={"csrf": csrf}).status_code == 403
    assert stored(client, "chenmin", "3") is None and alarm_v2(client) == 0


def test_delete_makes_alarm_v2_answer_3001(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    reply = client.post("/ui/groups/ops/1/delete", data={"csrf": csrf})
    assert reply.status_code == 303 and "deleted" in reply.headers["location"]
    assert stored(client) is None and alarm_v2(client, id="ops", level="1") == 3001
    assert client.get("/ui/groups/ops/1").status_code == 404


def test_a_test_alarm_goes_to_every_channel_and_shows_each_result(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    data = {"csrf": csrf, "dep": "du-op", "env": "dev", "alert_level": "中", "alert_business": "页面测试"}
    first = text_of(client.post("/ui/groups/ops/1/test", data=data).text)
    assert "0 发送成功 / sent" in first
    assert "dingtalk-robot …7b3d done 0 1" in first and "email done 0 1" in first
    again = text_of(client.post("/ui/groups/ops/1/test", data=data).text)  # past the dedup window
    assert "0 发送成功 / sent" in again
    alarms = client.get("/api/v1/alarms?group=ops/1", headers=AUTH).json()["alarms"]
    assert len(alarms) == 2 and alarms[0]["alarm"]["alert_business"] == "页面测试"
    assert alarms[0]["alarm"]["dep"] == "du-op" and alarms[0]["alarm"]["alert_level"] == "中"


def test_the_preview_shows_what_a_channel_receives(client: TestClient) -> None:
    login(client)
    page = client.get("/ui/preview?group=chenmin/3&channel=dingtalk&sample=seed")
    assert "部门:du-srv\n环境:prod\n告警业务:陈敏测试alert_business" in page.text
    assert "【高】陈敏测试alert_business" in page.text
    email = client.get("/ui/preview?group=chenmin/3&channel=email&sample=full")
    assert "HTML part (email)" in email.text and "pay-api-03" in email.text


def test_the_preview_uses_a_groups_override_and_shows_a_broken_one(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf, **{"template:native/title.j2": "[{{ alarm.env }}] 告警"}))
    assert "[prod] 告警" in client.get("/ui/preview?group=ops/1&channel=dingtalk").text
    broken = {"template:native/title.j2": "{{ alarm.nothing_here }}"}  # compiles, fails when rendered
    assert client.post("/ui/groups/ops/1", data=edit_form(client, **broken)).status_code == 303
    page = text_of(client.get("/ui/preview?group=ops/1&channel=dingtalk").text)
    assert "template override 'native/title.j2' of group ops/1 failed" in page
    assert "(the shipped template was used)" in page


def test_the_audit_log_says_who_changed_what(client: TestClient) -> None:
    csrf = login(client)
    client.post("/ui/groups/new", data=robot_form(csrf))
    new_hook = "https://oapi.dingtalk.com/robot/send?access_token=rotated-token-77"
    form = edit_form(client, name="改名", mention="all", **{"channels-0-webhook": new_hook})
    client.post("/ui/groups/ops/1", data=form)
    client.post("/ui/groups/ops/1/test", data={"csrf": csrf, "dep": "du-srv", "env": "prod", "alert_level": "低"})
    client.delete("/api/v1/groups/ops/1", headers=AUTH)
    page = client.get("/ui/audit")
    rows = [text_of(r).strip() for r in re.findall(r"<tr>(.*?)</tr>", page.text, re.DOTALL)][1:]
    assert [r.split(" ", 2)[2] for r in rows] == [
        "token:ci group.delete ops/1 deleted '改名'",
        "alice test.send ops/1 code 0",
        "alice group.update ops/1 name: '运维组' -> '改名'; mention: 'members' -> 'all'; "
        "new webhook or secret for dingtalk-robot (position 1)",
        "alice group.create ops/1 created '运维组': 1 members, channels: dingtalk-robot, email",
        "alice login testclient",
    ]
    assert_no_secret([*SECRETS, "rotated-token-77"], page.text)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0])


FEISHU_HOOK = "https://open.larksuite.com/open-apis/bot/v2/hook/lark-hook-token-6b1d"


def test_feishu_targets_are_made_on_the_page_with_their_token_write_only(tmp_path: Path) -> None:
    apps = {"apps": {"ops": {"app_id": "cli_x", "app_secret": "feishu-app-secret-1"}}}
    with sqlite_client(tmp_path, feishu=apps) as client:
        csrf = login(client)
        form = robot_form(csrf, **{
            "members-0-feishu_userid": "ou_wangwei",
            "channels-0-type": "feishu-robot", "channels-0-webhook": FEISHU_HOOK,
            "channels-0-secret": "feishu-sign-secret-2", "channels-0-keyword": "告警",
            "channels-1-type": "feishu-app", "channels-1-app": "ops", "channels-1-chat_id": "oc_ops",
        })  # fmt: skip
        assert client.post("/ui/groups/new", data=form).status_code == 303
        group = stored(client)
        assert group is not None and group.members[0].feishu_userid == "ou_wangwei"
        assert group.targets == (
            FeishuRobot(webhook=FEISHU_HOOK, secret="feishu-sign-secret-2", keyword="告警"),
            FeishuApp(app="ops", chat_id="oc_ops"),
        )
        page = client.get("/ui/groups/ops/1").text
        assert "/open-apis/bot/v2/hook/****" in page and 'value="oc_ops"' in page and 'value="告警"' in page
        assert_no_secret(["lark-hook-token-6b1d", "feishu-sign-secret-2"], page)
        edited = edit_form(client, **{"channels-1-app": "nope"})
        assert "under feishu.apps" in field_error(client.post("/ui/groups/ops/1", data=edited).text, "channels-1-app")


def test_the_preview_shows_a_feishu_card_body(client: TestClient) -> None:
    login(client)
    page = client.get("/ui/preview?group=chenmin/3&channel=feishu&sample=seed")
    assert page.status_code == 200 and "告警业务:陈敏测试alert_business" in page.text
