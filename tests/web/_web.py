"""What the web tests share: settings with a user and an API token, logging in, and reading forms."""

from __future__ import annotations

import html as html_module
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import Settings
from bridge.config_file import parse
from bridge.web.auth import hash_password
from tests.helpers import config_data

USER, PASSWORD = "alice", "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD, n=2**10)  # cheap to check, so the tests stay quick
API_TOKEN = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ROBOT_TOKEN = "robot-token-5f1c9e0a7b3d"
ROBOT_SECRET = "SEC9a8b7c6d5e4f3a2b1c0d"
WEBHOOK = f"https://oapi.dingtalk.com/robot/send?access_token={ROBOT_TOKEN}"
SECRETS = (ROBOT_TOKEN, ROBOT_SECRET, API_TOKEN, PASSWORD)


def web_config(store_url: str, **top: Any) -> dict[str, Any]:
    web = {"users": {USER: PASSWORD_HASH, "bob": PASSWORD_HASH}, "api_tokens": {"ci": API_TOKEN}}
    return config_data(store_url, **{"web": web, **top})


def web_settings(store_url: str, **top: Any) -> Settings:
    return parse(web_config(store_url, **top), "test.yaml")


@contextmanager
def client_for(settings: Settings, **options: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False, **options) as client:
        yield client


def sqlite_client(folder: Path, **top: Any) -> Any:
    return client_for(web_settings(f"sqlite:///{folder / 's.db'}", **top))


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', html)
    assert match, "the page has no CSRF field"
    return match[1]


def login(client: TestClient, user: str = USER, password: str = PASSWORD) -> str:
    """Log in through the form; the session's CSRF token."""
    page = client.get("/ui/login")
    reply = client.post("/ui/login", data={"csrf": csrf_of(page.text), "user": user, "password": password})
    assert reply.status_code == 303, reply.text
    return csrf_of(client.get("/ui/groups").text)


def robot_group(**changes: Any) -> dict[str, Any]:
    group = {
        "id": "ops",
        "level": "1",
        "name": "运维组",
        "members": [{"name": "王伟", "mail": "wangwei@example.com", "dingtalk_userid": "wangwei"}],
        "channels": [{"type": "dingtalk-robot", "webhook": WEBHOOK, "secret": ROBOT_SECRET}, {"type": "email"}],
    }
    return group | changes


def robot_form(csrf: str, **changes: str) -> dict[str, str]:
    """The new-group form, filled in as a person would."""
    form = {
        "csrf": csrf,
        "id": "ops",
        "level": "1",
        "name": "运维组",
        "format": "text",
        "mention": "members",
        "dedup_window": "",
        "members-0-name": "王伟",
        "members-0-mail": "wangwei@example.com",
        "members-0-dingtalk_userid": "wangwei",
        "members-1-name": "",
        "channels-0-type": "dingtalk-robot",
        "channels-0-webhook": WEBHOOK,
        "channels-0-secret": ROBOT_SECRET,
        "channels-1-type": "email",
        "channels-2-type": "",
    }
    return form | changes


def text_of(html: str) -> str:
    """A page's visible text, roughly: enough to look for words in it."""
    return html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))
