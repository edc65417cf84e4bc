"""Forwarded headers, believed only from the proxies the config names, and the login limit per user name, against a
real gateway process (uvicorn applies the forwarded headers)."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from bridge.config_file import parse
from bridge.schema import ConfigError
from tests.helpers import REDIS_URL, gateway_process, write_config
from tests.web._web import PASSWORD, USER, csrf_of, web_config


def _config(tmp_path: Path, **top: object) -> Path:
    data = web_config(REDIS_URL, **top)
    data["web"] |= {"login_attempts": 3, "login_window": "1h"}
    return write_config(tmp_path / "bridge.yaml", data)


def _login(url: str, password: str, **headers: str) -> requests.Response:
    with requests.Session() as session:
        page = session.get(f"{url}/ui/login", headers=headers, timeout=10)
        form = {"csrf": csrf_of(page.text), "user": USER, "password": password}
        return session.post(f"{url}/ui/login", data=form, headers=headers, timeout=10, allow_redirects=False)


def test_a_new_forwarded_for_on_each_try_does_not_get_round_the_login_limit(tmp_path: Path) -> None:
    with gateway_process(_config(tmp_path)) as url:
        codes = [_login(url, "guess", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(10)]
    assert codes == [401] * 3 + [429] * 7


def test_forwarded_headers_from_a_trusted_proxy_are_believed(tmp_path: Path) -> None:
    with gateway_process(_config(tmp_path, trusted_proxies=["127.0.0.0/8"])) as url:
        forwarded = requests.get(f"{url}/ui/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    with gateway_process(_config(tmp_path)) as url:
        untrusted = requests.get(f"{url}/ui/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "secure" in forwarded.headers["set-cookie"].lower()  # the login form's cookie, over https
    assert "secure" not in untrusted.headers["set-cookie"].lower()


def test_guesses_from_many_addresses_are_slowed_yet_the_owner_gets_in(tmp_path: Path) -> None:
    with gateway_process(_config(tmp_path, trusted_proxies=["127.0.0.1"])) as url:

        def attempt(i: int, password: str = "guess") -> int:
            return _login(url, password, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code

        assert [attempt(i) for i in range(4)] == [401] * 4  # each address is new; the fourth had the name's turn
        assert attempt(5) == 429  # the name waits 2 s now, whichever address asks
        time.sleep(2.5)
        assert attempt(6, PASSWORD) == 303  # the owner, after the wait: never shut out for good


def test_a_trusted_proxy_that_is_no_address_is_refused_at_load() -> None:
    try:
        parse(web_config(REDIS_URL, trusted_proxies=["ingress"]), "t.yaml")
    except ConfigError as exc:
        assert "trusted_proxies: 'ingress' is not an IP address or network" in str(exc)
    else:
        raise AssertionError("accepted")
