from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes._http import TIMEOUT
from tests.fakes._server import FakeServer, ManualClock
from tests.fakes.conftest import Spawn
from tests.fakes.feishu import FeishuFake, bot_sign

SECRET = "feishu-secret-0123456789"
TEXT = {"msg_type": "text", "content": {"text": "disk 91% on db-1"}}
CARD = {
    "msg_type": "interactive",
    "card": {
        "header": {"title": {"tag": "plain_text", "content": "【高】磁盘"}, "template": "red"},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**主机**: db-1 <at id=ou_alice></at>"}}],
    },
}


@pytest.fixture
def fake(clock: ManualClock) -> FeishuFake:
    fake = FeishuFake(clock=clock)
    fake.add_bot("signed", SECRET)
    fake.add_bot("plain")
    fake.add_bot("kw", keywords=("告警", "alert"))
    fake.add_app("cli_app", "app-secret")
    fake.add_chat("oc_ops")
    return fake


@pytest.fixture
def url(fake: FeishuFake) -> Iterator[str]:
    with FakeServer(fake.app()) as server:
        yield server.url


def post(url: str, body: object, headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body, ensure_ascii=False).encode()
    response = requests.post(url, data=data, params=params, headers=headers, timeout=TIMEOUT)
    reply = response.json()
    assert isinstance(reply, dict)
    return response.status_code, reply


def hook(url: str, body: object, token: str = "plain") -> dict[str, Any]:
    return post(f"{url}/open-apis/bot/v2/hook/{token}", body)[1]


def signed(body: dict[str, Any], timestamp: int | None = None, secret: str = SECRET) -> dict[str, Any]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"timestamp": str(ts), "sign": bot_sign(secret, ts), **body}


def test_a_text_and_a_card_are_accepted_and_recorded(fake: FeishuFake, url: str) -> None:
    assert hook(url, TEXT) == {"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"}
    assert hook(url, CARD)["code"] == 0
    text, card = fake.messages
    assert (text.msg_type, text.text, text.token) == ("text", "disk 91% on db-1", "plain")
    assert card.content == CARD["card"] and card.mentions == ["ou_alice"]


def test_an_unknown_hook_is_refused(fake: FeishuFake, url: str) -> None:
    assert hook(url, TEXT, "nope")["code"] == 19001
    fake.remove_bot("plain")
    assert hook(url, TEXT)["code"] == 19001
    assert len(fake.messages) == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (TEXT, 19021),  # no signature
        (signed(TEXT, secret="another"), 19021),
        (signed(TEXT, int(time.time()) - 3700), 19021),  # more than an hour old
        ({**signed(TEXT), "timestamp": int(time.time())}, 19021),  # a number, not a string
        (signed(TEXT), 0),
        (signed(TEXT, int(time.time()) - 3500), 0),
    ],
)
def test_the_signature_goes_in_the_body_with_seconds(url: str, body: dict[str, Any], code: int) -> None:
    assert hook(url, body, "signed")["code"] == code


def test_the_signature_in_the_query_string_is_not_enough(url: str) -> None:
    ts = str(int(time.time()))
    _, reply = post(f"{url}/open-apis/bot/v2/hook/signed", TEXT, timestamp=ts, sign=bot_sign(SECRET, int(ts)))
    assert reply["code"] == 19021


def test_keywords_are_searched_in_every_string(url: str) -> None:
    assert hook(url, TEXT, "kw")["code"] == 19024
    assert hook(url, {"msg_type": "text", "content": {"text": "【告警】disk"}}, "kw")["code"] == 0
    titled = json.loads(json.dumps(CARD, ensure_ascii=False).replace("磁盘", "alert 磁盘"))
    assert hook(url, titled, "kw")["code"] == 0


def test_an_ip_allowlist_refuses_other_addresses(fake: FeishuFake, url: str) -> None:
    fake.add_bot("ip", allowed=("10.0.0.1",))
    assert hook(url, TEXT, "ip")["code"] == 19022


@pytest.mark.parametrize(
    "body",
    [
        {"content": {"text": "x"}},
        {"msg_type": "markdown", "content": {"text": "x"}},
        {"msg_type": "text", "content": {"text": ""}},
        {"msg_type": "text", "text": {"content": "DingTalk's shape"}},
        {"msg_type": "interactive", "content": CARD["card"]},  # a card goes in "card"
        {"msg_type": "interactive", "card": {"elements": [{"tag": "div", "text": "plain string"}]}},
        {"msg_type": "post", "content": {"post": {"zh_cn": {"content": "not paragraphs"}}}},
    ],
)
def test_malformed_messages_are_refused(fake: FeishuFake, url: str, body: dict[str, Any]) -> None:
    assert hook(url, body)["code"] == 19002
    assert len(fake.messages) == 0


def test_a_post_is_accepted(url: str) -> None:
    paragraph = [{"tag": "text", "text": "磁盘"}, {"tag": "a", "text": "看", "href": "https://x"}]
    assert (
        hook(url, {"msg_type": "post", "content": {"post": {"zh_cn": {"title": "t", "content": [paragraph]}}}})["code"]
        == 0
    )


def test_bodies_over_20000_bytes_are_refused(fake: FeishuFake, url: str) -> None:
    envelope = len(json.dumps({"msg_type": "text", "content": {"text": ""}}, ensure_ascii=False).encode())
    text = "磁" * ((20000 - envelope) // 3)
    assert hook(url, {"msg_type": "text", "content": {"text": text}})["code"] == 0
    status, reply = post(f"{url}/open-apis/bot/v2/hook/plain", {"msg_type": "text", "content": {"text": text + "xxx"}})
    assert (status, reply["code"]) == (400, 9499) and "too many" not in reply["msg"]
    assert len(fake.messages) == 1


def test_five_a_second_and_a_hundred_a_minute_then_9499(fake: FeishuFake, url: str, clock: ManualClock) -> None:
    codes = [hook(url, TEXT)["code"] for _ in range(6)]
    assert codes == [0] * 5 + [9499]
    accepted = 5
    for _ in range(19):
        clock.advance(1.0)
        accepted += sum(hook(url, TEXT)["code"] == 0 for _ in range(5))
    assert accepted == 100
    clock.advance(1.0)
    assert hook(url, TEXT) == {"code": 9499, "msg": "too many request"}
    assert (len(fake.messages), fake.too_many) == (100, 2)
    clock.advance(40.0)  # the first second's five leave the minute
    assert [hook(url, TEXT)["code"] for _ in range(6)] == [0] * 5 + [9499]


def test_the_rate_refusal_may_come_as_http_400(fake: FeishuFake, url: str) -> None:
    fake.rate_status = 400
    for _ in range(5):
        hook(url, TEXT)
    status, reply = post(f"{url}/open-apis/bot/v2/hook/plain", TEXT)
    assert (status, reply["code"], reply["msg"]) == (400, 9499, "too many request")


def tenant_token(url: str, app_secret: str = "app-secret") -> dict[str, Any]:
    body = {"app_id": "cli_app", "app_secret": app_secret}
    return post(f"{url}/open-apis/auth/v3/tenant_access_token/internal", body)[1]


def im_send(url: str, token: str, body: dict[str, Any], receive_id_type: str = "chat_id") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    return post(f"{url}/open-apis/im/v1/messages", body, headers, receive_id_type=receive_id_type)


def chat_text(text: str, chat_id: str = "oc_ops") -> dict[str, Any]:
    return {"receive_id": chat_id, "msg_type": "text", "content": json.dumps({"text": text})}


def test_app_token_then_message_to_a_chat(fake: FeishuFake, url: str) -> None:
    reply = tenant_token(url)
    assert (reply["code"], reply["expire"]) == (0, 7200) and reply["tenant_access_token"].startswith("t-")
    assert tenant_token(url)["tenant_access_token"] == reply["tenant_access_token"]  # the same while valid
    status, sent = im_send(url, reply["tenant_access_token"], chat_text("disk 91%"))
    assert (status, sent["code"]) == (200, 0) and sent["data"]["message_id"].startswith("om_")
    [message] = fake.messages
    assert (message.chat_id, message.text) == ("oc_ops", "disk 91%")
    assert fake.gettoken_calls == 2


def test_app_refusals(fake: FeishuFake, url: str, clock: ManualClock) -> None:
    assert tenant_token(url, "wrong")["code"] == 10014
    token = tenant_token(url)["tenant_access_token"]
    assert im_send(url, "t-forged", chat_text("x"))[1]["code"] == 99991663
    assert post(f"{url}/open-apis/im/v1/messages", chat_text("x"), receive_id_type="chat_id")[1]["code"] == 99991661
    assert im_send(url, token, chat_text("x"), "open_id")[1]["code"] == 230001
    assert im_send(url, token, chat_text("x", "oc_other"))[1]["code"] == 230002
    assert im_send(url, token, {**chat_text("x"), "content": {"text": "not a string"}})[1]["code"] == 230001
    clock.advance(7200)
    assert im_send(url, token, chat_text("x")) == (400, {"code": 99991663, "msg": "Invalid access token for "
                                                                              "authorization (expired)"})  # fmt: skip
    assert len(fake.messages) == 0


def test_app_five_a_second_per_chat(fake: FeishuFake, url: str, clock: ManualClock) -> None:
    token = tenant_token(url)["tenant_access_token"]
    assert [im_send(url, token, chat_text(str(i)))[1]["code"] for i in range(6)] == [0] * 5 + [230020]
    clock.advance(1.0)
    assert im_send(url, token, chat_text("again"))[1]["code"] == 0


def test_cli_prints_url_and_received_messages(spawn_cli: Spawn) -> None:
    proc = spawn_cli("tests.fakes.feishu", "--bot", "tok", "--secret", SECRET, "--keyword", "disk")
    assert proc.stdout is not None
    base = proc.stdout.readline().split()[-1]
    assert base.startswith("http://127.0.0.1:")
    assert hook(base, signed(TEXT), "tok")["code"] == 0
    proc.terminate()
    out = proc.stdout.read()
    assert proc.wait(timeout=10) == 0
    assert "bot: POST /open-apis/bot/v2/hook/tok (signed, keywords=['disk'])" in out
    assert SECRET not in out
    assert "disk 91% on db-1" in out
