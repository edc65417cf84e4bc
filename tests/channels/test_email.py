from __future__ import annotations

import logging
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from bridge import config_file
from bridge.channels import email as email_channel
from bridge.codes import Code
from bridge.model import Email, Format, Group, Member, Message, Outcome, Reason
from tests.channels._shared import assert_no_secret, logged
from tests.fakes.smtp import Recorder, smtp_server
from tests.helpers import free_port

pytestmark = pytest.mark.anyio

TITLE = "【告警】磁盘使用率超过90%"
BODY = "陈敏测试alert_business\n异常说明：磁盘满"
HTML = "<p>陈敏测试alert_business</p>"
SENDER = "告警网关 <alert@example.com>"
USER, PASSWORD = "alarm-bridge", "s3cret-Pa55word"
GROUP = Group(
    id="chenmin",
    level="3",
    members=(
        Member(name="陈敏", mail="chenmin@example.com"),
        Member(name="王伟", mail="wangwei@example.com"),
        Member(name="无邮箱"),
    ),
)
TARGET = Email(to=("ops@example.com", "CHENMIN@example.com"))
MESSAGE = Message(title=TITLE, body=BODY, format=Format.TEXT, html=HTML)
EVERYONE = {"chenmin@example.com", "wangwei@example.com", "ops@example.com"}


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers 535 itself (with the default handled=True nothing is sent and the client hangs).
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def echoing_authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    """A careless server that repeats the password in its refusal."""
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad password {auth_data.password.decode()}")


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate for localhost, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run(command, check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


_connections: list[email_channel.Connections] = []  # the senders' connections, closed after each test


async def hang_up() -> None:
    """Close the kept connections; a TLS server stopped before them leaves its side of them unclosed."""
    while _connections:
        await _connections.pop().close()


@pytest.fixture(autouse=True)
async def close_connections() -> AsyncIterator[None]:
    yield
    await hang_up()


def sender(port: int, timeout: float = 5.0, **options: Any) -> email_channel.Sender:
    """A sender with settings read the way the config file is read, so new settings keep their defaults."""
    defaults = {"host": "127.0.0.1", "port": port, "security": "plain", "sender": SENDER, "validate_certs": False}
    options = defaults | options
    settings = config_file.parse({"email": options, "delivery": {"timeout": timeout}}, "test.yaml")
    _connections.append(email_channel.Connections())
    return email_channel.Sender(settings.email, settings.delivery, _connections[-1])


def assert_failed(outcome: Outcome, retryable: bool, reason: Reason) -> None:
    assert not outcome.ok
    assert outcome.code == Code.EMAIL_SEND
    assert (outcome.retryable, outcome.reason) == (retryable, reason), outcome


async def test_one_multipart_message_reaches_every_recipient_once() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        outcome = await sender(port).send(TARGET, GROUP, MESSAGE)

    assert outcome.ok and outcome.target == "email" and outcome.code == 0, outcome
    assert "3 of 3 recipients accepted" in outcome.detail
    [received] = handler.received
    assert received.mail_from == "alert@example.com"
    assert sorted(received.rcpt_tos) == sorted(EVERYONE)
    assert len(received.rcpt_tos) == 3  # CHENMIN@ from target.to is the member's address again

    message = received.message()
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert plain.get_content().rstrip("\n") == BODY
    assert html.get_content().rstrip("\n") == HTML
    assert message["Subject"] == TITLE
    assert message["From"].addresses[0].display_name == "告警网关"
    to = {a.addr_spec: a.display_name for a in message["To"].addresses}
    assert to == {"chenmin@example.com": "陈敏", "wangwei@example.com": "王伟", "ops@example.com": ""}
    assert message["Date"] and message["Message-ID"].endswith("@example.com>")


async def test_consecutive_mails_share_one_connection_until_the_server_closes_it() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        one = sender(port)
        for _ in range(3):
            assert (await one.send(TARGET, GROUP, MESSAGE)).ok
    assert len(handler.received) == 3 and len({r.peer for r in handler.received}) == 1
    with smtp_server(handler, port=port):  # the kept connection died with the old server
        outcome = await one.send(TARGET, GROUP, MESSAGE)
    assert outcome.ok, outcome
    assert len(handler.received) == 4 and handler.received[3].peer != handler.received[0].peer


async def test_headers_are_rfc2047_encoded_on_the_wire() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        assert (await sender(port).send(TARGET, GROUP, MESSAGE)).ok
    head = handler.received[0].raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), head
    lines = {line.split(b":", 1)[0].lower(): line for line in head.replace(b"\r\n ", b" ").split(b"\r\n")}
    assert lines[b"subject"].startswith(b"Subject: =?utf-8?")
    assert b"=?utf-8?" in lines[b"to"] and b"<chenmin@example.com>" in lines[b"to"]
    assert lines[b"from"].startswith(b"From: =?utf-8?") and lines[b"from"].endswith(b"<alert@example.com>")


async def test_a_long_subject_is_folded_on_the_wire_and_reads_back_whole() -> None:
    handler = Recorder()
    title = "【严重】数据组 磁盘使用率超过 95% 主机 db-master-01.prod.example.com 持续十分钟" * 3
    with smtp_server(handler) as port:
        assert (await sender(port).send(TARGET, GROUP, replace(MESSAGE, title=title))).ok
    head = handler.received[0].raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert handler.received[0].message()["Subject"] == title


async def test_plain_only_without_html_and_a_one_line_subject() -> None:
    handler = Recorder()
    message = Message(title="disk\nfull", body="plain body", format=Format.TEXT)
    with smtp_server(handler) as port:
        assert (await sender(port).send(Email(), GROUP, message)).ok
    parsed = handler.received[0].message()
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().rstrip("\n") == "plain body"
    assert parsed["Subject"] == "disk full"


async def test_login_with_username_and_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handler = Recorder()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        outcome = await sender(port, username=USER, password=PASSWORD).send(TARGET, GROUP, MESSAGE)
    assert outcome.ok, outcome
    assert handler.received[0].login == USER
    assert_no_secret(PASSWORD, outcome.detail, repr(outcome), *logged(caplog))


async def test_wrong_password_fails_as_config() -> None:
    handler = Recorder()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        outcome = await sender(port, username=USER, password="wrong").send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=False, reason=Reason.CONFIG)
    assert "535" in outcome.detail
    assert handler.received == []


async def test_a_refused_login_leaks_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-Pa55word-xyz"
    with smtp_server(Recorder(), authenticator=echoing_authenticator, auth_require_tls=False) as port:
        outcome = await sender(port, username=USER, password=secret).send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=False, reason=Reason.CONFIG)
    assert "535 5.7.8 bad password ***" in outcome.detail
    # Not shared.logged(caplog): mail.log is the fake server's own logger, and it prints the reply it sends.
    ours = [r for r in caplog.records if r.name != "mail.log"]
    assert any("bad password" in r.getMessage() for r in ours)
    texts = [text for r in ours for text in (r.getMessage(), repr(r.args), r.exc_text or "")]
    assert_no_secret(secret, outcome.detail, repr(outcome), *texts)


async def test_starttls_with_login(server_tls: ssl.SSLContext) -> None:
    handler = Recorder()
    tls: dict[str, Any] = {"tls_context": server_tls, "require_starttls": True, "authenticator": authenticator}
    with smtp_server(handler, **tls) as port:
        outcome = await sender(port, security="starttls", username=USER, password=PASSWORD).send(TARGET, GROUP, MESSAGE)
        await hang_up()
    assert outcome.ok, outcome
    [received] = handler.received
    assert received.tls and received.login == USER
    assert sorted(received.rcpt_tos) == sorted(EVERYONE)


async def test_implicit_tls(server_tls: ssl.SSLContext) -> None:
    handler = Recorder()
    with smtp_server(handler, ssl_context=server_tls) as port:
        outcome = await sender(port, security="tls").send(TARGET, GROUP, MESSAGE)
        await hang_up()
    assert outcome.ok, outcome
    assert handler.received[0].message()["Subject"] == TITLE


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_an_untrusted_certificate_is_a_config_error(security: str, server_tls: ssl.SSLContext) -> None:
    handler = Recorder()
    tls: dict[str, Any] = {"ssl_context": server_tls} if security == "tls" else {"tls_context": server_tls}
    with smtp_server(handler, **tls) as port:
        outcome = await sender(port, security=security, validate_certs=True).send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=False, reason=Reason.CONFIG)
    assert "self-signed certificate" in outcome.detail and "validate_certs" in outcome.detail
    assert handler.received == []


async def test_starttls_against_a_server_without_it_is_a_config_error() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        outcome = await sender(port, security="starttls").send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=False, reason=Reason.CONFIG)
    assert "STARTTLS" in outcome.detail
    assert handler.received == []


async def test_a_partial_refusal_is_delivered_and_names_the_refused() -> None:
    handler = Recorder(refuse={"wangwei@example.com": "550 5.1.1 no such user"})
    with smtp_server(handler) as port:
        outcome = await sender(port).send(TARGET, GROUP, MESSAGE)
    assert outcome.ok and outcome.reason is Reason.OK, outcome
    assert "2 of 3 recipients accepted" in outcome.detail
    assert "wangwei@example.com refused (550 5.1.1 no such user)" in outcome.detail
    assert sorted(handler.received[0].rcpt_tos) == ["chenmin@example.com", "ops@example.com"]
    assert outcome.later == ()  # refused for good: mailing again would not help


async def test_recipients_refused_for_now_are_named_to_be_mailed_again() -> None:
    handler = Recorder(refuse={"wangwei@example.com": "450 4.7.1 greylisted", "ops@example.com": "550 no such user"})
    with smtp_server(handler) as port:
        outcome = await sender(port).send(TARGET, GROUP, MESSAGE)
    assert outcome.ok and outcome.later == ("wangwei@example.com",), outcome
    assert "1 of 3 recipients accepted" in outcome.detail and "mailed again" in outcome.detail


@pytest.mark.parametrize(("reply", "retryable"), [("550 5.1.1 no such user", False), ("450 4.2.1 busy", True)])
async def test_all_recipients_refused(reply: str, retryable: bool) -> None:
    handler = Recorder(refuse=dict.fromkeys(EVERYONE, reply))
    with smtp_server(handler) as port:
        outcome = await sender(port).send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=retryable, reason=Reason.REJECTED)
    assert "all recipients refused" in outcome.detail and "ops@example.com" in outcome.detail
    assert handler.received == []


@pytest.mark.parametrize(("reply", "retryable"), [("554 5.6.0 spam", False), ("451 4.3.0 try later", True)])
async def test_a_refused_message_is_retried_only_for_4xx(reply: str, retryable: bool) -> None:
    handler = Recorder(data_reply=reply)
    with smtp_server(handler) as port:
        outcome = await sender(port).send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=retryable, reason=Reason.REJECTED)
    assert reply.split()[0] in outcome.detail
    assert len(handler.received) == 1  # the server saw it, then refused it


async def test_connection_refused_is_retryable() -> None:
    outcome = await sender(free_port()).send(TARGET, GROUP, MESSAGE)
    assert_failed(outcome, retryable=True, reason=Reason.NETWORK)


async def test_a_stalled_server_times_out_quickly() -> None:
    handler = Recorder(stall=3.0)
    with smtp_server(handler) as port:
        started = time.monotonic()
        outcome = await sender(port, timeout=0.3).send(TARGET, GROUP, MESSAGE)
        elapsed = time.monotonic() - started
    assert_failed(outcome, retryable=True, reason=Reason.TIMEOUT)
    assert elapsed < 2.0


async def test_no_recipients_is_a_config_failure() -> None:
    group = Group(id="g", level="1", members=(Member(name="无邮箱"), Member(name="bad", mail="not-an-address")))
    outcome = await sender(free_port()).send(Email(), group, MESSAGE)
    assert_failed(outcome, retryable=False, reason=Reason.CONFIG)
    assert "no recipients" in outcome.detail and "not-an-address" in outcome.detail


async def test_an_invalid_address_is_skipped_and_named() -> None:
    handler = Recorder()
    with smtp_server(handler) as port:
        target = Email(to=("值班 <ops@example.com>", "a@", "x@example.com, y@example.com"))
        outcome = await sender(port).send(target, GROUP, MESSAGE)
    assert outcome.ok, outcome
    assert "skipped invalid addresses: 'a@', 'x@example.com, y@example.com'" in outcome.detail
    [received] = handler.received
    assert sorted(received.rcpt_tos) == sorted(EVERYONE)
    assert {a.addr_spec: a.display_name for a in received.message()["To"].addresses}["ops@example.com"] == "值班"


async def test_a_member_mail_may_carry_a_display_name() -> None:
    handler = Recorder()
    group = Group(id="g", level="1", members=(Member(name="", mail="李雷 <lilei@example.com>"),))
    with smtp_server(handler) as port:
        assert (await sender(port).send(Email(), group, MESSAGE)).ok
    [received] = handler.received
    assert received.rcpt_tos == ["lilei@example.com"]
    assert [(a.display_name, a.addr_spec) for a in received.message()["To"].addresses] == [
        ("李雷", "lilei@example.com")
    ]
