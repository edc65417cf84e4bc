from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests

from tests.fakes._http import TIMEOUT, get_json, post_json
from tests.fakes._server import FakeServer, ManualClock
from tests.fakes.conftest import Spawn
from tests.fakes.dingtalk import DingTalkFake, robot_sign

SECRET = "SEC0123456789abcdef"
TEXT = {"msgtype": "text", "text": {"content": "disk 91% on db-1"}}


@pytest.fixture
def fake(clock: ManualClock) -> DingTalkFake:
    fake = DingTalkFake(clock=clock)
    fake.add_robot("signed", SECRET)
    fake.add_robot("plain")
    fake.add_robot("kw", keywords=("告警", "alert"))
    fake.add_app("appkey", "appsecret")
    fake.add_user("alice", "bob", "carol")
    return fake


@pytest.fixture
def url(fake: DingTalkFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


def now_ms() -> int:
    return int(time.time() * 1000)


def robot(url: str, body: object, token: str = "plain", **params: str) -> dict[str, Any]:
    return post_json(f"{url}/robot/send", body, {"access_token": token, **params})


def signed(url: str, body: object, timestamp: int | None = None) -> dict[str, Any]:
    ts = now_ms() if timestamp is None else timestamp
    return robot(url, body, "signed", timestamp=str(ts), sign=robot_sign(SECRET, ts))


def token(url: str) -> str:
    reply = get_json(f"{url}/gettoken", {"appkey": "appkey", "appsecret": "appsecret"})
    assert reply["errcode"] == 0, reply
    return str(reply["access_token"])


def app_call(url: str, path: str, body: object, access_token: str) -> dict[str, Any]:
    return post_json(f"{url}{path}", body, {"access_token": access_token})


def create_chat(url: str, access_token: str, users: list[str] | None = None) -> dict[str, Any]:
    users = ["alice", "bob"] if users is None else users
    return app_call(url, "/chat/create", {"name": "ops", "owner": users[0], "useridlist": users}, access_token)


# -- custom robot --


def test_signed_message_is_accepted_and_recorded(fake: DingTalkFake, url: str) -> None:
    assert signed(url, TEXT) == {"errcode": 0, "errmsg": "ok"}
    assert [(m.token, m.body) for m in fake.robot_messages] == [("signed", TEXT)]
    assert fake.robot_messages[0].msgtype == "text"


def test_sign_quoted_once_in_a_hand_built_url_is_accepted(fake: DingTalkFake, url: str) -> None:
    ts = now_ms()
    query = f"access_token=signed&timestamp={ts}&sign={quote_plus(robot_sign(SECRET, ts))}"
    reply = requests.post(f"{url}/robot/send?{query}", json=TEXT, timeout=TIMEOUT).json()
    assert reply["errcode"] == 0
    assert len(fake.robot_messages) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"timestamp": "{ts}", "sign": "AAAA"},
        {"timestamp": "{ts}"},
        {"sign": "{sign}"},
        {"timestamp": "{stale}", "sign": "{stale_sign}"},
        {"timestamp": "{future}", "sign": "{future_sign}"},
    ],
    ids=["bad-sign", "no-sign", "no-timestamp", "stale", "future"],
)
def test_sign_and_timestamp_failures_give_310000(fake: DingTalkFake, url: str, params: dict[str, str]) -> None:
    ts, stale, future = now_ms(), now_ms() - 3_600_000 - 5_000, now_ms() + 3_600_000 + 5_000
    values = {
        "ts": str(ts),
        "sign": robot_sign(SECRET, ts),
        "stale": str(stale),
        "stale_sign": robot_sign(SECRET, stale),
        "future": str(future),
        "future_sign": robot_sign(SECRET, future),
    }
    reply = robot(url, TEXT, "signed", **{k: v.format(**values) for k, v in params.items()})
    assert reply["errcode"] == 310000
    assert len(fake.robot_messages) == 0


def test_timestamp_just_inside_the_hour_is_accepted(url: str) -> None:
    assert signed(url, TEXT, now_ms() - 3_600_000 + 5_000)["errcode"] == 0


def test_double_encoded_sign_is_refused(fake: DingTalkFake, url: str) -> None:
    ts = now_ms()
    params = {"access_token": "signed", "timestamp": str(ts), "sign": quote_plus(robot_sign(SECRET, ts))}
    response = requests.post(f"{url}/robot/send", params=params, json=TEXT, timeout=TIMEOUT)
    assert "%253D" in str(response.request.url)
    assert response.json()["errcode"] == 310000
    assert response.json()["errmsg"].startswith("sign not match")
    assert len(fake.robot_messages) == 0


def test_raw_plus_in_a_hand_built_url_decodes_to_space_and_is_refused(url: str) -> None:
    ts = next(t for t in range(now_ms(), now_ms() - 10_000, -1) if "+" in robot_sign(SECRET, t))
    query = f"access_token=signed&timestamp={ts}&sign={robot_sign(SECRET, ts)}"
    reply = requests.post(f"{url}/robot/send?{query}", json=TEXT, timeout=TIMEOUT).json()
    assert reply["errcode"] == 310000


def test_keywords_are_searched_in_every_string(fake: DingTalkFake, url: str) -> None:
    assert robot(url, TEXT, "kw")["errcode"] == 310000
    markdown = {"msgtype": "markdown", "markdown": {"title": "【告警】db-1", "text": "disk full"}}
    assert robot(url, markdown, "kw")["errcode"] == 0
    assert [m.body for m in fake.robot_messages] == [markdown]


def test_unknown_token_gives_300001(url: str) -> None:
    assert robot(url, TEXT, "nope")["errcode"] == 300001


def test_21st_message_in_a_window_gives_130101_and_blocks(fake: DingTalkFake, url: str, clock: ManualClock) -> None:
    assert [robot(url, TEXT)["errcode"] for _ in range(20)] == [0] * 20
    reply = robot(url, TEXT)
    assert reply == {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    clock.advance(61)  # the window is clear again, but the block lasts 10 minutes
    assert robot(url, TEXT)["errcode"] == 130101
    assert robot(url, TEXT, "kw")["errcode"] == 310000  # other robots are not blocked
    clock.advance(540)
    assert robot(url, TEXT)["errcode"] == 0
    assert len(fake.robot_messages) == 21


def test_window_slides(url: str, clock: ManualClock) -> None:
    for _ in range(10):
        assert robot(url, TEXT)["errcode"] == 0
    clock.advance(30)
    for _ in range(10):
        assert robot(url, TEXT)["errcode"] == 0
    clock.advance(31)  # the first ten left the window
    assert [robot(url, TEXT)["errcode"] for _ in range(11)] == [0] * 10 + [130101]


def test_body_over_20000_utf8_bytes_gives_460101(fake: DingTalkFake, url: str) -> None:
    chinese = {"msgtype": "text", "text": {"content": "磁" * 6700}}  # 20100 bytes, 6700 characters
    assert robot(url, chinese)["errcode"] == 460101
    assert robot(url, {"msgtype": "text", "text": {"content": "x" * 6700}})["errcode"] == 0
    assert len(fake.robot_messages) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"text": {"content": "no msgtype"}},
        {"msgtype": "image", "image": {}},
        {"msgtype": "text", "text": {"content": ""}},
        {"msgtype": "text", "content": "flat"},
        {"msgtype": "markdown", "markdown": {"text": "no title"}},
        {**TEXT, "at": {"atMobiles": "138"}},
        {**TEXT, "at": {"isAtAll": "true"}},
        ["not", "an", "object"],
    ],
)
def test_bad_messages_are_refused(fake: DingTalkFake, url: str, body: object) -> None:
    assert robot(url, body)["errcode"] == 400105
    assert len(fake.robot_messages) == 0


def test_at_and_loose_types_are_accepted(fake: DingTalkFake, url: str) -> None:
    at = {"atMobiles": ["13800000000"], "atUserIds": ["alice"], "isAtAll": False}
    link = {"msgtype": "link", "link": {"title": "t", "text": "x", "messageUrl": "https://e.x"}}
    assert robot(url, {**TEXT, "at": at})["errcode"] == 0
    assert robot(url, link)["errcode"] == 0
    assert [m.msgtype for m in fake.robot_messages] == ["text", "link"]


# -- enterprise app --


def test_gettoken_returns_the_same_token_while_valid(fake: DingTalkFake, url: str) -> None:
    reply = get_json(f"{url}/gettoken", {"appkey": "appkey", "appsecret": "appsecret"})
    assert reply["errcode"] == 0 and reply["expires_in"] == 7200
    assert token(url) == reply["access_token"]
    assert get_json(f"{url}/gettoken", {"appkey": "appkey", "appsecret": "wrong"})["errcode"] == 40001
    assert get_json(f"{url}/gettoken", {"appkey": "other", "appsecret": "appsecret"})["errcode"] == 40089
    assert fake.gettoken_calls == 4


def test_expired_token_gives_42001_and_a_new_token_works(fake: DingTalkFake, url: str, clock: ManualClock) -> None:
    old = token(url)
    fake.expire_tokens()
    assert create_chat(url, old)["errcode"] == 42001
    new = token(url)
    assert new != old and create_chat(url, new)["errcode"] == 0
    clock.advance(7201)
    assert create_chat(url, new)["errcode"] == 42001


def test_revoked_missing_and_garbage_tokens(fake: DingTalkFake, url: str) -> None:
    old = token(url)
    fake.revoke_tokens()
    assert create_chat(url, old)["errcode"] == 40014
    assert create_chat(url, "garbage")["errcode"] == 40014
    assert create_chat(url, "")["errcode"] == 41001
    assert app_call(url, "/chat/send", {"chatid": "x", "msg": TEXT}, old)["errcode"] == 40014


def test_chat_create_records_the_chat(fake: DingTalkFake, url: str) -> None:
    reply = create_chat(url, token(url))
    assert reply["errcode"] == 0 and reply["conversationTag"] == 2
    assert reply["chatid"].startswith("chat") and reply["openConversationId"].startswith("cid")
    chat = fake.chats[reply["chatid"]]
    assert (chat.name, chat.owner, chat.useridlist) == ("ops", "alice", ("alice", "bob"))
    assert chat.open_conversation_id == reply["openConversationId"]


def test_unknown_or_departed_user_gives_60121_naming_them(fake: DingTalkFake, url: str) -> None:
    access = token(url)
    reply = create_chat(url, access, ["alice", "dave"])
    assert reply["errcode"] == 60121 and "dave" in reply["errmsg"] and "alice" not in reply["errmsg"]
    fake.remove_user("bob")
    reply = create_chat(url, access, ["alice", "bob"])
    assert reply["errcode"] == 60121 and "bob" in reply["errmsg"]
    fake.unknown_user_errcode = 60111
    assert create_chat(url, access, ["alice", "bob"])["errcode"] == 60111
    assert fake.chats == {}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"name": "x" * 21, "owner": "alice", "useridlist": ["alice"]}, 40035),
        ({"name": "", "owner": "alice", "useridlist": ["alice"]}, 40035),
        ({"name": "ops", "owner": "carol", "useridlist": ["alice", "bob"]}, 49006),
        ({"name": "ops", "owner": "alice", "useridlist": []}, 40031),
        ({"name": "ops", "owner": "alice", "useridlist": ["alice"] * 41}, 49005),
    ],
)
def test_chat_create_validation(url: str, body: dict[str, Any], errcode: int) -> None:
    assert app_call(url, "/chat/create", body, token(url))["errcode"] == errcode


def test_chat_create_accepts_20_char_name(url: str) -> None:
    body = {"name": "群" * 20, "owner": "alice", "useridlist": ["alice"]}
    assert app_call(url, "/chat/create", body, token(url))["errcode"] == 0


def test_chat_send_accepts_msg_and_legacy_flat_forms(fake: DingTalkFake, url: str) -> None:
    access = token(url)
    chatid = create_chat(url, access)["chatid"]
    first = app_call(url, "/chat/send", {"chatid": chatid, "msg": TEXT}, access)
    flat = {"chatid": chatid, "sender": "alice", **TEXT}
    second = app_call(url, "/chat/send", flat, access)
    assert first["errcode"] == 0 and second["errcode"] == 0 and first["messageId"] != second["messageId"]
    messages = fake.chats[chatid].messages
    assert [m.msg for m in messages] == [TEXT, TEXT]
    assert [m.message_id for m in messages] == [first["messageId"], second["messageId"]]
    assert messages[1].body == flat


def test_chat_send_refusals(fake: DingTalkFake, url: str) -> None:
    access = token(url)
    chatid = create_chat(url, access)["chatid"]
    send = {"chatid": chatid, "msg": {"msgtype": "text", "text": {"content": "磁" * 6700}}}
    assert app_call(url, "/chat/send", send, access)["errcode"] == 460101
    assert app_call(url, "/chat/send", {"chatid": chatid, "msg": {"msgtype": "x"}}, access)["errcode"] == 34014
    assert app_call(url, "/chat/send", {"msg": TEXT}, access)["errcode"] == 49000
    assert app_call(url, "/chat/send", {"chatid": chatid, "sender": "carol", **TEXT}, access)["errcode"] == 34007
    assert len(fake.chats[chatid].messages) == 0


def test_gone_chat_gives_configured_code(fake: DingTalkFake, url: str) -> None:
    access = token(url)
    chatid = create_chat(url, access)["chatid"]
    fake.delete_chat(chatid)
    assert app_call(url, "/chat/send", {"chatid": chatid, "msg": TEXT}, access)["errcode"] == 34001
    fake.gone_chat_errcode = 40016
    assert app_call(url, "/chat/send", {"chatid": chatid, "msg": TEXT}, access)["errcode"] == 40016


def test_faults_apply_to_every_endpoint(fake: DingTalkFake, url: str) -> None:
    fake.fail_next(1, status=503)
    response = requests.post(f"{url}/robot/send", params={"access_token": "plain"}, json=TEXT, timeout=TIMEOUT)
    assert response.status_code == 503
    assert robot(url, TEXT)["errcode"] == 0
    fake.hang(5)
    with pytest.raises(requests.Timeout):
        requests.get(f"{url}/gettoken", timeout=0.2)


def test_cli_prints_url_and_received_messages(spawn_cli: Spawn) -> None:
    proc = spawn_cli("tests.fakes.dingtalk", "--robot", "tok", "--secret", SECRET, "--user", "alice")
    assert proc.stdout is not None
    base = proc.stdout.readline().split()[-1]
    assert base.startswith("http://127.0.0.1:")
    ts = now_ms()
    reply = robot(base, TEXT, "tok", timestamp=str(ts), sign=robot_sign(SECRET, ts))
    assert reply["errcode"] == 0
    proc.terminate()
    out = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
    assert proc.wait(timeout=10) == 0
    assert "robot: POST /robot/send?access_token=tok (signed" in out
    assert SECRET not in out
    assert "disk 91% on db-1" in out
