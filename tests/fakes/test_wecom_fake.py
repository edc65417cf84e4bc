from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes._http import get_json, post_json
from tests.fakes._server import FakeServer, ManualClock
from tests.fakes.conftest import Spawn
from tests.fakes.wecom import WeComFake

CORP, SECRET, AGENT = "ww0123", "app-secret", 1000002


@pytest.fixture
def fake(clock: ManualClock) -> WeComFake:
    fake = WeComFake(clock=clock)
    fake.add_app(CORP, SECRET, AGENT)
    fake.add_app(CORP, "other-secret", 1000003)
    fake.add_robot("key1")
    fake.add_user("Alice", "bob", "carol")
    return fake


@pytest.fixture
def url(fake: WeComFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


def gettoken(url: str, corpid: str = CORP, secret: str = SECRET) -> dict[str, Any]:
    return get_json(f"{url}/cgi-bin/gettoken", {"corpid": corpid, "corpsecret": secret})


def token(url: str, secret: str = SECRET) -> str:
    reply = gettoken(url, secret=secret)
    assert reply["errcode"] == 0, reply
    return str(reply["access_token"])


def call(url: str, path: str, body: object, access_token: str) -> dict[str, Any]:
    return post_json(f"{url}/cgi-bin/{path}", body, {"access_token": access_token})


def message(touser: str, content: str = "disk 91% on db-1", **extra: Any) -> dict[str, Any]:
    return {"touser": touser, "msgtype": "text", "agentid": AGENT, "text": {"content": content}, **extra}


def webhook(url: str, body: object, key: str = "key1") -> dict[str, Any]:
    return post_json(f"{url}/cgi-bin/webhook/send", body, {"key": key})


# -- token --


def test_gettoken_same_token_and_errors(fake: WeComFake, url: str) -> None:
    first = gettoken(url)
    assert first["errcode"] == 0 and first["expires_in"] == 7200
    assert token(url) == first["access_token"]
    assert token(url, "other-secret") != first["access_token"]
    assert gettoken(url, corpid="nope")["errcode"] == 40013
    assert gettoken(url, secret="wrong")["errcode"] == 40001
    assert fake.gettoken_calls == 5


def test_expired_revoked_and_missing_tokens(fake: WeComFake, url: str, clock: ManualClock) -> None:
    old = token(url)
    fake.expire_tokens()
    assert call(url, "message/send", message("bob"), old)["errcode"] == 42001
    fake.expired_token_errcode = 40014  # WeCom often reports expiry this way
    assert call(url, "message/send", message("bob"), old)["errcode"] == 40014
    new = token(url)
    assert new != old and call(url, "message/send", message("bob"), new)["errcode"] == 0
    fake.revoke_tokens()
    assert call(url, "appchat/create", {}, new)["errcode"] == 40014
    assert call(url, "message/send", message("bob"), "")["errcode"] == 41001
    clock.advance(7201)
    assert call(url, "message/send", message("bob"), token(url))["errcode"] == 0


def test_errmsg_has_the_wecom_shape(url: str) -> None:
    errmsg = gettoken(url, corpid="nope")["errmsg"]
    assert errmsg.startswith("invalid corpid, hint: [")
    assert errmsg.endswith("more info at https://open.work.weixin.qq.com/devtool/query?e=40013")


# -- app message --


def test_message_is_delivered_per_user(fake: WeComFake, url: str) -> None:
    reply = call(url, "message/send", message("alice|bob"), token(url))
    assert reply["errcode"] == 0 and reply["invaliduser"] == "" and reply["msgid"]
    sent = fake.app_messages[0]
    assert (sent.delivered, sent.dropped, sent.content, sent.agentid) == (
        ("Alice", "bob"),
        (),
        "disk 91% on db-1",
        AGENT,
    )
    assert fake.inbox("ALICE") == [sent] and fake.inbox("carol") == []


def test_some_invalid_users_are_reported_lowercased(fake: WeComFake, url: str) -> None:
    reply = call(url, "message/send", message("alice|Ghost|ZED"), token(url))
    assert (reply["errcode"], reply["invaliduser"]) == (0, "ghost|zed")
    assert fake.app_messages[0].delivered == ("Alice",)


def test_all_invalid_gives_81013_with_invaliduser(fake: WeComFake, url: str) -> None:
    reply = call(url, "message/send", message("Ghost|zed"), token(url))
    assert (reply["errcode"], reply["invaliduser"]) == (81013, "ghost|zed")
    assert call(url, "message/send", message("", toparty="2"), token(url))["errcode"] == 81013
    assert len(fake.app_messages) == 0


def test_at_all_reaches_every_user(fake: WeComFake, url: str) -> None:
    assert call(url, "message/send", message("@all"), token(url))["errcode"] == 0
    assert set(fake.app_messages[0].delivered) == {"Alice", "bob", "carol"}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (message(""), 82001),
        (message("bob", agentid=1000003), 40056),
        (message("bob", msgtype="news"), 40008),
        (message("bob", ""), 44004),
        (message("bob", "磁" * 683), 45002),  # 2049 bytes
    ],
)
def test_message_refusals(fake: WeComFake, url: str, body: dict[str, Any], errcode: int) -> None:
    assert call(url, "message/send", body, token(url))["errcode"] == errcode
    assert len(fake.app_messages) == 0


def test_content_limit_counts_utf8_bytes_and_code_is_configurable(fake: WeComFake, url: str) -> None:
    access = token(url)
    assert call(url, "message/send", message("bob", "磁" * 682), access)["errcode"] == 0  # 2046 bytes
    fake.oversize_errcode = 40058
    assert call(url, "message/send", message("bob", "磁" * 683), access)["errcode"] == 40058
    markdown = {"touser": "bob", "msgtype": "markdown", "agentid": AGENT, "markdown": {"content": "x" * 2049}}
    assert call(url, "message/send", markdown, access)["errcode"] == 40058


def test_per_user_rate_limit_drops_silently(fake: WeComFake, url: str, clock: ManualClock) -> None:
    access = token(url)
    for _ in range(30):
        assert call(url, "message/send", message("bob"), access)["errcode"] == 0
    reply = call(url, "message/send", message("bob|carol"), access)
    assert reply["errcode"] == 0 and reply["invaliduser"] == ""
    assert (fake.app_messages[-1].delivered, fake.app_messages[-1].dropped) == (("carol",), ("bob",))
    assert len(fake.inbox("bob")) == 30
    clock.advance(60)
    call(url, "message/send", message("bob"), access)
    assert len(fake.inbox("bob")) == 31


# -- appchat --


def test_appchat_create_get_send(fake: WeComFake, url: str) -> None:
    access = token(url)
    body = {"name": "运维" * 30, "userlist": ["alice", "bob"], "chatid": "ops1"}
    assert call(url, "appchat/create", body, access) == {"errcode": 0, "errmsg": "ok", "chatid": "ops1"}
    info = get_json(f"{url}/cgi-bin/appchat/get", {"access_token": access, "chatid": "ops1"})["chat_info"]
    assert (info["name"], info["owner"], info["userlist"]) == ("运维" * 25, "alice", ["alice", "bob"])
    send = {"chatid": "ops1", "msgtype": "markdown", "markdown": {"content": "**disk**"}}
    assert call(url, "appchat/send", send, access)["errcode"] == 0
    assert [(m.msgtype, m.content) for m in fake.chats["ops1"].messages] == [("markdown", "**disk**")]
    generated = call(url, "appchat/create", {"userlist": ["alice", "bob"], "owner": "bob"}, access)["chatid"]
    assert fake.chats[generated].owner == "bob"


def test_unknown_or_deleted_chat_gives_86003(fake: WeComFake, url: str) -> None:
    access = token(url)
    send = {"chatid": "ops1", "msgtype": "text", "text": {"content": "x"}}
    assert call(url, "appchat/send", send, access)["errcode"] == 86003
    call(url, "appchat/create", {"userlist": ["alice", "bob"], "chatid": "ops1"}, access)
    assert call(url, "appchat/send", send, access)["errcode"] == 0
    fake.delete_chat("ops1")
    assert call(url, "appchat/send", send, access)["errcode"] == 86003
    assert get_json(f"{url}/cgi-bin/appchat/get", {"access_token": access, "chatid": "ops1"})["errcode"] == 86003


def test_invalid_member_is_named(fake: WeComFake, url: str) -> None:
    access = token(url)
    reply = call(url, "appchat/create", {"userlist": ["alice", "dave"]}, access)
    assert reply["errcode"] == 86216 and "dave" in reply["errmsg"] and "alice" not in reply["errmsg"]
    fake.invalid_member_errcode = 40003
    fake.remove_user("bob")
    reply = call(url, "appchat/create", {"userlist": ["alice", "bob"]}, access)
    assert reply["errcode"] == 40003 and "bob" in reply["errmsg"]
    assert fake.chats == {}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"userlist": ["alice"]}, 86006),
        ({"userlist": ["alice", "bob"], "chatid": "bad-id"}, 86001),
        ({"userlist": ["alice", "bob"], "chatid": "x" * 33}, 86001),
        ({"userlist": ["alice", "bob"], "owner": "carol"}, 86005),
    ],
)
def test_appchat_create_validation(url: str, body: dict[str, Any], errcode: int) -> None:
    assert call(url, "appchat/create", body, token(url))["errcode"] == errcode


def test_appchat_duplicate_chatid_oversize_and_foreign_app(url: str) -> None:
    access = token(url)
    body = {"userlist": ["alice", "bob"], "chatid": "ops1"}
    assert call(url, "appchat/create", body, access)["errcode"] == 0
    assert call(url, "appchat/create", body, access)["errcode"] == 86215
    big = {"chatid": "ops1", "msgtype": "text", "text": {"content": "x" * 2049}}
    assert call(url, "appchat/send", big, access)["errcode"] == 45002
    small = {"chatid": "ops1", "msgtype": "text", "text": {"content": "x"}}
    assert call(url, "appchat/send", small, token(url, "other-secret"))["errcode"] == 86008


# -- group robot --


def test_robot_text_with_mentions_is_recorded(fake: WeComFake, url: str) -> None:
    body = {"msgtype": "text", "text": {"content": "disk", "mentioned_list": ["bob", "@all"]}}
    assert webhook(url, body) == {"errcode": 0, "errmsg": "ok"}
    assert fake.robot_inbox("key1") == [fake.robot_messages[0]]
    assert (fake.robot_messages[0].key, fake.robot_messages[0].content) == ("key1", "disk")


def test_unknown_or_removed_key_gives_93000(fake: WeComFake, url: str) -> None:
    body = {"msgtype": "text", "text": {"content": "disk"}}
    assert webhook(url, body, "nope")["errcode"] == 93000
    fake.remove_robot("key1")
    assert webhook(url, body)["errcode"] == 93000


@pytest.mark.parametrize(
    ("msgtype", "size", "errcode"),
    [
        ("text", 2048, 0),
        ("text", 2049, 40058),
        ("markdown", 4096, 0),
        ("markdown", 4097, 40058),
        ("markdown_v2", 4096, 0),
        ("markdown_v2", 4097, 40058),
    ],
)
def test_robot_byte_limits(fake: WeComFake, url: str, msgtype: str, size: int, errcode: int) -> None:
    content = "磁" * (size // 3) + "x" * (size % 3)
    reply = webhook(url, {"msgtype": msgtype, msgtype: {"content": content}})
    assert reply["errcode"] == errcode
    assert len(fake.robot_messages) == (errcode == 0)
    if errcode:
        assert f"exceed max length {2048 if msgtype == 'text' else 4096}" in reply["errmsg"]


def test_robot_refuses_bad_mentions_and_types(url: str) -> None:
    assert webhook(url, {"msgtype": "text", "text": {"content": "x", "mentioned_list": "bob"}})["errcode"] == 40058
    assert webhook(url, {"msgtype": "image", "image": {}})["errcode"] == 40008


def test_robot_over_20_per_minute_gives_45009(fake: WeComFake, url: str, clock: ManualClock) -> None:
    body = {"msgtype": "markdown", "markdown": {"content": "disk"}}
    assert [webhook(url, body)["errcode"] for _ in range(21)] == [0] * 20 + [45009]
    clock.advance(60)
    assert webhook(url, body)["errcode"] == 0
    assert len(fake.robot_inbox("key1")) == 21


def test_cli_prints_url_and_received_messages(spawn_cli: Spawn) -> None:
    args = ["--robot", "k1", "--corpid", CORP, "--corpsecret", SECRET, "--user", "alice"]
    proc = spawn_cli("tests.fakes.wecom", *args)
    assert proc.stdout is not None
    base = proc.stdout.readline().split()[-1]
    assert webhook(base, {"msgtype": "text", "text": {"content": "磁盘告警"}}, "k1")["errcode"] == 0
    assert call(base, "message/send", message("alice"), token(base))["errcode"] == 0
    proc.terminate()
    out = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
    assert proc.wait(timeout=10) == 0
    assert "磁盘告警" in out and "[wecom app 1000002 -> alice] text: disk 91% on db-1" in out
    assert SECRET not in out
