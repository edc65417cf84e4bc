"""Headers every reply carries, whichever route (or none) answers it."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from tests.web._web import web_settings

ROUTES = [("GET", "/-/healthy"), ("POST", "/alarm_v2"), ("GET", "/api/v1/groups"), ("GET", "/ui/login"),
          ("GET", "/no/such/page"), ("POST", "/-/reload"), ("GET", "/metrics")]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_reply_is_nosniff_and_hsts_only_over_https(tmp_path: Path, method: str, path: str) -> None:
    app = create_app(web_settings(f"sqlite:///{tmp_path / 's.db'}"))
    with TestClient(app) as plain, TestClient(app, base_url="https://testserver") as tls:
        over_http, over_https = plain.request(method, path), tls.request(method, path)
    assert over_http.headers.get_list("x-content-type-options") == ["nosniff"]
    assert over_https.headers.get_list("x-content-type-options") == ["nosniff"]
    assert "strict-transport-security" not in over_http.headers
    assert over_https.headers["strict-transport-security"].startswith("max-age=")
