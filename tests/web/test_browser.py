"""The page in a real browser (Debian's chromium through Playwright) against a gateway process and a fake DingTalk.

Screenshots of every page go to test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.channels._shared import assert_no_secret
from tests.fakes._server import FakeServer
from tests.fakes.dingtalk import DingTalkFake
from tests.helpers import free_port, gateway_process, post, require_binary, signed, write_config
from tests.test_outbox import wait_until
from tests.test_storm import STORM, fields
from tests.web._web import PASSWORD, USER, web_config

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
ROBOT_TOKEN, ROBOT_SECRET = "browser-robot-token-41d7", "SECbrowser0123456789abcd"
APP_KEY, APP_SECRET = "browserappkey", "browser-app-secret-9f3a"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_binary("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def dingtalk() -> Iterator[tuple[DingTalkFake, str]]:
    fake = DingTalkFake()
    fake.add_robot(ROBOT_TOKEN, ROBOT_SECRET)
    fake.add_app(APP_KEY, APP_SECRET)
    fake.add_user("wangwei", "chenmin")
    with FakeServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
def gateway(tmp_path: Path, dingtalk: tuple[DingTalkFake, str]) -> Iterator[str]:
    data = web_config(
        f"sqlite:///{tmp_path / 's.db'}",
        delivery={"timeout": "3s", "deadline": "5s", "reply_wait": "10s", "backoff": "1h"},
        dingtalk={"base_url": dingtalk[1], "apps": {"corp": {"appkey": APP_KEY, "appsecret": APP_SECRET}}},
    )
    with gateway_process(write_config(tmp_path / "config.yaml", data)) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 800}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, gateway: str) -> None:
    page.goto(f"{gateway}/ui/groups")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/groups$"))
    shot(page, "01-login")
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", "not the password")
    page.click("button:has-text('Log in')")
    expect(page.locator("p.error")).to_have_text("Wrong user name or password.")
    shot(page, "02-login-failed")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{gateway}/ui/groups")


def test_a_person_sets_up_a_robot_group_tests_it_and_finds_the_alarm(
    page: Page, gateway: str, dingtalk: tuple[DingTalkFake, str]
) -> None:
    fake, fake_url = dingtalk
    webhook = f"{fake_url}/robot/send?access_token={ROBOT_TOKEN}"
    log_in(page, gateway)
    shot(page, "03-groups-provisioned-only")

    page.click("text=New group")
    page.fill("input[name=id]", "ops")
    page.fill("input[name=level]", "1")
    page.fill("input[name=name]", "运维值班组")
    page.select_option("select[name=format]", "markdown")
    page.select_option("select[name=mention]", "members")
    for i, (name, mail, mobile, userid) in enumerate(
        [("王伟", "wangwei@example.com", "13900000000", "wangwei"), ("离职者", "left@example.com", "", "leaver")]
    ):
        page.fill(f"input[name=members-{i}-name]", name)
        page.fill(f"input[name=members-{i}-mail]", mail)
        page.fill(f"input[name=members-{i}-mobile]", mobile)
        page.fill(f"input[name=members-{i}-dingtalk_userid]", userid)
    page.select_option("select[name=channels-0-type]", "dingtalk-robot")
    page.fill("input[name=channels-0-webhook]", webhook)
    page.fill("input[name=channels-0-secret]", ROBOT_SECRET)
    page.fill("input[name=members-2-mail]", "broken-address")  # a mistake first
    page.click("button:has-text('Create group')")
    expect(page.locator("text=Nothing was saved")).to_be_visible()
    expect(page.locator("input[name=members-2-mail] + .field-error")).to_contain_text("expected a mail address")
    shot(page, "04-group-new-with-errors")
    assert_no_secret([ROBOT_TOKEN, ROBOT_SECRET], page.content())

    page.fill("input[name=members-2-mail]", "")  # fix it; the secrets are typed again (never shown back)
    page.fill("input[name=members-2-name]", "")
    page.select_option("select[name=channels-0-type]", "dingtalk-robot")
    page.fill("input[name=channels-0-webhook]", webhook)
    page.fill("input[name=channels-0-secret]", ROBOT_SECRET)
    page.click("button:has-text('Create group')")
    expect(page.locator("p.notice")).to_have_text("Group created.")
    expect(page.locator("input[name=channels-0-webhook]")).to_have_attribute(
        "placeholder", f"{fake_url}/robot/send?access_token=****"
    )
    assert_no_secret([ROBOT_TOKEN, ROBOT_SECRET], page.content())
    shot(page, "05-group-created")

    page.select_option("select[name=alert_level]", "高")
    page.fill("input[name=alert_business]", "浏览器测试告警")
    page.click("button:has-text('Send test alarm')")
    expect(page.locator("p.result")).to_contain_text("0 发送成功 / sent")
    expect(page.locator("table.list tbody tr").first).to_contain_text("dingtalk-robot")
    expect(page.locator("table.list tbody tr").first).to_contain_text("done")
    shot(page, "06-test-alarm-sent")
    assert len(fake.robot_messages) == 1
    robot = fake.robot_messages[0].body
    assert robot["msgtype"] == "markdown" and "浏览器测试告警" in robot["markdown"]["text"]
    assert robot["at"]["atMobiles"] == ["13900000000"]

    page.click("nav >> text=Recent alarms")
    page.fill("input[name=group]", "ops/1")
    page.select_option("select[name=code]", "0")
    page.click("button:has-text('Filter')")
    row = page.locator("table.alarms tbody tr").first
    expect(row).to_contain_text("浏览器测试告警")
    expect(row).to_contain_text("done")
    expect(row).to_contain_text("ops/1")
    shot(page, "07-recent-alarms")

    # DingTalk app chats: the chat is made without the member who left; the delivery and the page say so.
    page.click("nav >> text=Groups")
    shot(page, "08-groups")
    page.click("a:has-text('ops')")
    page.select_option("select[name=channels-1-type]", "dingtalk-app")
    page.fill("input[name=channels-1-app]", "corp")
    page.click("button:has-text('Save')")
    expect(page.locator("p.notice")).to_have_text("Saved.")
    page.fill("input[name=alert_business]", "建群测试")
    page.click("button:has-text('Send test alarm')")
    expect(page.locator("p.result")).to_contain_text("0 发送成功 / sent")
    expect(page.locator("table.list")).to_contain_text("rejected userids: leaver")
    shot(page, "09-test-alarm-rejected-member")
    page.click("text=Back to the group")
    expect(page.locator(".notice.warn")).to_contain_text("rejected 1 member user id")
    expect(page.locator("tr.flagged input[name=members-1-name]")).to_have_value("离职者")
    shot(page, "10-group-rejected-member-flagged")
    page.check("input[name=members-1-remove]")
    page.click("button:has-text('Save')")
    expect(page.locator("p.notice")).to_have_text("Saved.")
    page.fill("input[name=alert_business]", "建群测试 2")
    page.click("button:has-text('Send test alarm')")
    expect(page.locator("p.result")).to_contain_text("0 发送成功 / sent")
    (chat,) = fake.chats.values()  # the group corrected: the chat made without the leaver goes on
    assert list(chat.useridlist) == ["wangwei"] and len(chat.messages) == 2
    assert len(fake.robot_messages) == 3  # the robot got every test alarm, its secret kept across the saves

    page.click("nav >> text=Template preview")
    page.select_option("select[name=group]", "ops/1")
    page.select_option("select[name=sample]", "full")
    page.click("button:has-text('Show')")
    expect(page.locator("pre.message").first).to_contain_text("**告警主机**")
    shot(page, "11-template-preview")

    page.goto(f"{gateway}/ui/groups/chenmin/3")
    expect(page.locator(".notice.info")).to_contain_text("read-only")
    shot(page, "12-group-provisioned-read-only")

    page.click("nav >> text=Audit log")
    expect(page.locator("table.list tbody tr")).to_have_count(7)
    expect(page.locator("table.list tbody tr").first).to_contain_text("test.send")
    shot(page, "13-audit-log")
    assert_no_secret([ROBOT_TOKEN, ROBOT_SECRET, APP_SECRET, PASSWORD], page.content())

    page.click("button:has-text('Log out')")
    expect(page).to_have_url(f"{gateway}/ui/login")
    page.goto(f"{gateway}/ui/audit")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_a_summarys_link_opens_its_storm_for_the_person_on_call(browser: Browser, tmp_path: Path) -> None:
    fake = DingTalkFake(robot_rate=20, robot_window=3.0)
    fake.add_robot(ROBOT_TOKEN)
    port = free_port()
    with FakeServer(fake.app()) as robot:
        webhook = f"{robot.url}/robot/send?access_token={ROBOT_TOKEN}"
        group = {
            "id": "ops",
            "level": "1",
            "name": "运维值班组",
            "channels": [{"type": "dingtalk-robot", "webhook": webhook}],
        }
        limits = {"dingtalk-robot": {"limit": 20, "window": "3.2s"}}
        delivery = {"timeout": "1s", "deadline": "2s", "storm": STORM, "rate_limits": limits}
        data = web_config(f"sqlite:///{tmp_path / 's.db'}", groups=[group], delivery=delivery)
        data["web"]["external_url"] = f"http://127.0.0.1:{port}"
        with gateway_process(write_config(tmp_path / "config.yaml", data), port) as gateway:
            bodies = [json.dumps(signed(fields(n) | {"id": "ops", "level": "1"})) for n in range(3000)]
            with ThreadPoolExecutor(16) as pool:
                codes = {r.json()["code"] for r in pool.map(lambda b: post(f"{gateway}/alarm_v2", b), bodies)}
            assert codes == {0}
            wait_until(lambda: any("storm over" in m.content for m in fake.robot_messages), timeout=60)
            first = next(m.content for m in fake.robot_messages if "告警风暴" in m.content)
            link = re.search(r"http://127\.0\.0\.1:\d+/ui/alarms\?storm=\w+", first)
            assert link, first
            context = browser.new_context(viewport={"width": 1366, "height": 800}, locale="zh-CN")
            page = context.new_page()
            page.goto(link[0])  # from the chat, not logged in: the login page, then the storm
            expect(page).to_have_url(re.compile(r"/ui/login\?next="))
            page.fill("input[name=user]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Log in')")
            expect(page).to_have_url(link[0])
            expect(page.locator("h1")).to_have_text(f"Storm {link[0].rpartition('=')[2]}")
            rows = page.locator("table.alarms tbody tr")
            expect(rows).to_have_count(100)
            expect(rows.first).to_contain_text("summarized in storm")
            shot(page, "14-storm-view")
            page.select_option("select[name=level]", "高")
            page.click("button:has-text('Filter')")
            expect(rows.first.locator("td").nth(2)).to_have_text("高")
            page.click("a.older")
            expect(rows.first).to_contain_text("summarized in storm")
            shot(page, "15-storm-view-older-high")
            context.close()


@pytest.mark.parametrize("require_login", [False, True], ids=["one-click", "with-login"])
def test_a_person_follows_a_mute_link_confirms_it_and_cannot_use_it_twice(
    page: Page, tmp_path: Path, dingtalk: tuple[DingTalkFake, str], require_login: bool
) -> None:
    fake, fake_url = dingtalk
    port = free_port()
    robot = {"type": "dingtalk-robot", "webhook": f"{fake_url}/robot/send?access_token={ROBOT_TOKEN}",
             "secret": ROBOT_SECRET}  # fmt: skip
    data = web_config(f"sqlite:///{tmp_path / 's.db'}", groups=[{"id": "chenmin", "level": "3", "channels": [robot]}],
                      delivery={"timeout": "3s", "deadline": "5s", "backoff": "1h"})  # fmt: skip
    data["web"] |= {"external_url": f"http://127.0.0.1:{port}",
                    "actions": {"key": "browser-action-key-0123456789", "require_login": require_login}}  # fmt: skip
    with gateway_process(write_config(tmp_path / "config.yaml", data), port=port) as gateway:
        assert post(f"{gateway}/alarm_v2", json.dumps(signed(fields(0)))).json() == {"code": 0}
        (message,) = fake.robot_messages.wait_for(1, timeout=15)
        link = dict(re.findall(r"^(.+?): (http://\S+/ui/act/\S+)$", message.content, re.MULTILINE))["静默 1h"]
        page.goto(link)
        if require_login:
            expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/act/mute\."))
            page.fill("input[name=user]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Log in')")
            expect(page).to_have_url(link)
        expect(page.locator("main")).to_contain_text("Mute alarms of group chenmin/3")
        expect(page.locator("main")).to_contain_text(f"Acting as {USER if require_login else 'chat link'}")
        shot(page, f"20-action-confirm-{'login' if require_login else 'one-click'}")
        assert len(fake.robot_messages) == 1  # opening the page did nothing
        page.click("button:has-text('Confirm')")
        expect(page.locator("p.notice")).to_contain_text("Done: mute")
        shot(page, f"21-action-done-{'login' if require_login else 'one-click'}")
        notice = fake.robot_messages.wait_for(2, timeout=15)[1].content
        assert notice.startswith("已静默 1h:") and notice.endswith(f"by {USER if require_login else 'chat link'}")
        page.goto(link)
        expect(page.locator("main")).to_contain_text("This link was used already")
        expect(page.locator("button:has-text('Confirm')")).to_have_count(0)
