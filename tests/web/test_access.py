"""Nobody gets in without logging in or a token, and no form post changes anything without its CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from bridge import web
from tests.web._web import API_TOKEN, AUTH, csrf_of, login, robot_group, sqlite_client, text_of

# The login page and its stylesheet (no data in either), and action links (signed: see tests/web/test_act.py).
PUBLIC = {"/ui/login", "/ui/static/style.css", "/ui/act/x"}
PARAMS = {"id": "ops", "level": "1", "job": "0123abcd:0", "token": "x", "mute": "0123abcd"}


def every_route() -> list[tuple[str, str]]:
    found = []
    for route in web.routes():
        assert isinstance(route, Route)
        path = route.path.format(**PARAMS)
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


UI = [(m, p) for m, p in every_route() if p.startswith("/ui") and p not in PUBLIC]
API = [(m, p) for m, p in every_route() if p.startswith("/api/v1")]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with sqlite_client(tmp_path) as c:
        assert c.post("/api/v1/groups", json=robot_group(), headers=AUTH).status_code == 201
        yield c


def test_the_routes_cover_the_page_and_the_api() -> None:
    assert len(UI) >= 12 and len(API) >= 11
    assert ("POST", "/ui/groups/ops/1") in UI and ("DELETE", "/api/v1/groups/ops/1") in API


@pytest.mark.parametrize(("method", "path"), UI)
def test_every_page_sends_strangers_to_the_login_page(client: TestClient, method: str, path: str) -> None:
    data = {"csrf": "x", "id": "ops", "level": "1", "name": "taken over"} if method == "POST" else None
    reply = client.request(method, path, data=data)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/ui/login")
    assert "运维组" not in reply.text and "wangwei" not in reply.text


@pytest.mark.parametrize(("method", "path"), UI)
def test_a_forged_session_cookie_is_a_stranger(client: TestClient, method: str, path: str) -> None:
    client.cookies.set("alarm_bridge_session", "made-up.signature", path="/ui")
    reply = client.request(method, path, data={"csrf": "x"} if method == "POST" else None)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize(("method", "path"), API)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {API_TOKEN}", "Bearer ", API_TOKEN])
def test_every_api_route_answers_401_without_a_valid_token(
    client: TestClient, method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    reply = client.request(method, path, headers=headers, json={"id": "ops", "level": "1"})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert set(reply.json()) == {"error"}
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).json()["name"] == "运维组"  # nothing changed


def test_the_login_page_and_stylesheet_hold_no_data(client: TestClient) -> None:
    page = client.get("/ui/login")
    assert page.status_code == 200 and "运维组" not in page.text and "ops" not in text_of(page.text)
    css = client.get("/ui/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def audit_size(client: TestClient) -> int:
    return len(client.get("/api/v1/audit", headers=AUTH).json()["entries"])


def state(client: TestClient) -> tuple[object, ...]:
    groups = client.get("/api/v1/groups", headers=AUTH).json()
    alarms = client.get("/api/v1/alarms", headers=AUTH).json()
    return groups, alarms, audit_size(client)


POSTS = [p for m, p in UI if m == "POST"]


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_form_without_its_csrf_token_changes_nothing(client: TestClient, path: str, token: str | None) -> None:
    csrf = login(client)
    before = state(client)
    data = {"id": "ops", "level": "1", "name": "taken over", "members-0-name": "mallory", "version": "x"}
    if token is not None:
        data["csrf"] = token
    reply = client.post(path, data=data)
    assert reply.status_code == 403
    assert "nothing was changed" in text_of(reply.text)
    assert state(client) == before
    assert client.get("/ui/groups").status_code == 200  # still logged in: not even the logout went through
    assert csrf_of(client.get("/ui/groups").text) == csrf


def test_another_sessions_csrf_token_is_not_valid(client: TestClient, tmp_path: Path) -> None:
    login(client, user="bob")
    with sqlite_client(tmp_path) as other:  # the same store: alice's session, her token
        alices = login(other)
    reply = client.post("/ui/groups/ops/1/delete", data={"csrf": alices})
    assert reply.status_code == 403
    assert client.get("/api/v1/groups/ops/1", headers=AUTH).status_code == 200


def test_the_login_form_needs_its_own_token(client: TestClient) -> None:
    reply = client.post("/ui/login", data={"user": "alice", "password": "correct horse battery"})
    assert reply.status_code == 403
    assert "alarm_bridge_session" not in reply.headers.get("set-cookie", "")
    client.get("/ui/login")  # sets the token cookie
    reply = client.post("/ui/login", data={"csrf": "guessed", "user": "alice", "password": "correct horse battery"})
    assert reply.status_code == 403


def test_pages_forbid_framing_and_scripts(client: TestClient) -> None:
    login(client)
    for path in ("/ui/login", "/ui/groups", "/ui/groups/ops/1"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none' covers scripts
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
