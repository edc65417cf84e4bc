"""Logging in and out: password hashes, session cookies, the failed-login limit, and `alarm-bridge hash-password`."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from bridge import cli
from bridge.app import create_app
from bridge.web.auth import hash_password, verify_password
from tests.web._web import PASSWORD, USER, client_for, csrf_of, login, text_of, web_settings


def test_a_hash_checks_its_password_and_no_other() -> None:
    stored = hash_password("s3cret-password", n=2**10)
    assert stored.startswith("scrypt$1024$8$1$")
    assert verify_password("s3cret-password", stored)
    assert not verify_password("s3cret-passwore", stored)
    assert hash_password("s3cret-password", n=2**10) != stored  # salted


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1024$8$1$!!$!!", "md5$x$y", "scrypt$99999999$8$1$AA==$AA=="])
def test_a_malformed_hash_matches_nothing(stored: str) -> None:
    assert not verify_password("anything", stored)


def test_hash_password_prints_a_hash_for_piped_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    assert cli.main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password("a long passphrase", printed)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password"]) == 1


def post_login(c: TestClient, user: str = "alice", password: str = PASSWORD) -> httpx2.Response:
    c.cookies.clear()  # a new visitor each time
    return c.post("/ui/login", data={"csrf": csrf_of(c.get("/ui/login").text), "user": user, "password": password})


def test_login_goes_where_the_person_was_going_and_logout_ends_the_session(tmp_path: Path) -> None:
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}")) as c:
        first = c.get("/ui/alarms?state=dead")
        assert first.headers["location"] == "/ui/login?next=/ui/alarms%3Fstate%3Ddead"
        page = c.get(first.headers["location"])
        reply = c.post(first.headers["location"], data={"csrf": csrf_of(page.text), "user": "alice",
                                                         "password": PASSWORD})  # fmt: skip
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/alarms?state=dead"
        cookie = c.cookies.get("alarm_bridge_session")
        csrf = csrf_of(c.get("/ui/groups").text)
        assert c.post("/ui/logout", data={"csrf": csrf}).headers["location"] == "/ui/login"
        assert c.get("/ui/groups").status_code == 303
        c.cookies.set("alarm_bridge_session", str(cookie), path="/ui")  # the old cookie, kept by someone
        assert c.get("/ui/groups").status_code == 303  # the session is gone from the store


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/elsewhere", "/ui/\\evil"])
def test_login_never_sends_anyone_to_another_site(tmp_path: Path, target: str) -> None:
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}")) as c:
        page = c.get(f"/ui/login?next={target}")
        reply = c.post(f"/ui/login?next={target}", data={"csrf": csrf_of(page.text), "user": "alice",
                                                          "password": PASSWORD})  # fmt: skip
        assert reply.headers["location"] == "/ui/groups"


def test_wrong_passwords_and_unknown_users_get_the_same_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}")) as c, caplog.at_level(logging.WARNING):
        wrong = post_login(c, password="wrong")
        unknown = post_login(c, user="hunter2-typed-here", password=PASSWORD)
        for reply in (wrong, unknown):
            assert reply.status_code == 401
            assert "Wrong user name or password." in text_of(reply.text)
            assert "alarm_bridge_session" not in reply.headers.get("set-cookie", "")
    assert f"failed login for {USER!r}" in caplog.text and "failed login for an unknown user" in caplog.text
    assert "hunter2" not in caplog.text  # an unknown name is often a password in the wrong field


@pytest.mark.parametrize(("https", "secure"), [(False, False), (True, True)])
def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(
    tmp_path: Path, https: bool, secure: bool
) -> None:
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}"),
                    base_url="https://testserver" if https else "http://testserver") as c:  # fmt: skip
        reply = post_login(c)
        cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie" and "session" in v)
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
        assert ("Secure" in cookie) is secure


def test_a_forwarded_proto_header_alone_does_not_make_a_request_https(tmp_path: Path) -> None:
    """Only uvicorn's proxy handling, for trusted proxies (FORWARDED_ALLOW_IPS), may set the scheme from it."""
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}"), headers={"X-Forwarded-Proto": "https"}) as c:
        cookies = [v for k, v in post_login(c).headers.multi_items() if k == "set-cookie"]
        assert cookies and not any("Secure" in v for v in cookies)


def limited(tmp_path: Path, address: str = "10.0.0.7") -> TestClient:
    settings = web_settings(f"sqlite:///{tmp_path / 's.db'}")
    settings = web_settings(
        f"sqlite:///{tmp_path / 's.db'}",
        web={"users": dict(settings.web.users), "login_attempts": 3, "login_window": "1h"},
    )
    return TestClient(create_app(settings), follow_redirects=False, client=(address, 40000))


def test_failed_logins_are_limited_per_address(tmp_path: Path) -> None:
    with limited(tmp_path) as c, limited(tmp_path, "10.0.0.8") as other:
        assert [post_login(c, password="guess").status_code for _ in range(3)] == [401] * 3
        blocked = post_login(c)  # the right password, too late
        assert blocked.status_code == 429
        assert "Too many failed logins" in text_of(blocked.text)
        assert "alarm_bridge_session" not in blocked.headers.get("set-cookie", "")
        assert post_login(other).status_code == 303


def test_a_successful_login_does_not_count_as_a_failure(tmp_path: Path) -> None:
    with limited(tmp_path) as c:
        assert post_login(c, password="guess").status_code == 401
        for _ in range(4):
            assert post_login(c).status_code == 303
        assert post_login(c, password="guess").status_code == 401
        assert post_login(c, password="guess").status_code == 401
        assert post_login(c).status_code == 429


def test_changing_a_users_hash_in_the_config_ends_their_sessions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    secret = {"session_secret": "a-fixed-secret-for-both-processes"}
    first = web_settings(url)
    web: dict[str, object] = {"users": dict(first.web.users), **secret}
    with client_for(web_settings(url, web=web)) as c:
        login(c)
        cookie = c.cookies.get("alarm_bridge_session")
    with client_for(web_settings(url, web=web)) as c:  # a restart with the same config: still logged in
        c.cookies.set("alarm_bridge_session", str(cookie), path="/ui")
        assert c.get("/ui/groups").status_code == 200
    web["users"] = {**first.web.users, "alice": hash_password("a new password", n=2**10)}
    with client_for(web_settings(url, web=web)) as c:
        c.cookies.set("alarm_bridge_session", str(cookie), path="/ui")
        assert c.get("/ui/groups").status_code == 303


def test_no_users_configured_says_how_to_add_one(tmp_path: Path) -> None:
    with client_for(web_settings(f"sqlite:///{tmp_path / 's.db'}", web={})) as c:
        assert "alarm-bridge hash-password" in text_of(c.get("/ui/login").text)
        assert post_login(c).status_code == 401
