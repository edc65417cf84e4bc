from __future__ import annotations

import abc
import argparse
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from aiohttp import web

from tests.fakes._server import Clock, FakeServer, Faults, TokenStore, reply


class Fake(abc.ABC):
    """State and controls shared by the vendor fakes; handlers run on the server thread."""

    casefold_users = False

    def __init__(self, *, token_ttl: float, renew_tokens: bool, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._users: dict[str, str] = {}
        self._gettoken_calls = 0
        self.faults = Faults()
        self.tokens = TokenStore(token_ttl, clock, renew=renew_tokens)
        self.expired_token_errcode = 42001
        self.echo: Callable[[str], None] | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware])
        app.add_routes(self.routes())
        return app

    @abc.abstractmethod
    def routes(self) -> list[web.RouteDef]: ...

    def error(self, errcode: int, text: str, **extra: Any) -> web.Response:
        return reply(errcode, text, **extra)

    def hang(self, seconds: float) -> None:
        self.faults.hang(seconds)

    def unhang(self) -> None:
        self.faults.unhang()

    def fail_next(self, n: int, status: int = 500) -> None:
        self.faults.fail_next(n, status)

    def expire_tokens(self) -> None:
        self.tokens.expire_all()

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    @property
    def gettoken_calls(self) -> int:
        with self._lock:
            return self._gettoken_calls

    def add_user(self, *userids: str) -> None:
        with self._lock:
            self._users.update((self._user_key(u), u) for u in userids)

    def remove_user(self, *userids: str) -> None:
        """The user left the company."""
        with self._lock:
            for userid in userids:
                self._users.pop(self._user_key(userid), None)

    def _user_key(self, userid: str) -> str:
        return userid.lower() if self.casefold_users else userid

    def _known_user(self, userid: str) -> str | None:
        """The user id as registered, or None."""
        with self._lock:
            return self._users.get(self._user_key(userid))

    def _all_users(self) -> list[str]:
        with self._lock:
            return list(self._users.values())

    def _count_gettoken(self) -> None:
        with self._lock:
            self._gettoken_calls += 1

    def _authorize(self, request: web.Request) -> str | web.Response:
        """The token's owner, or the error reply for a missing, expired or invalid token."""
        value = request.query.get("access_token", "")
        if not value:
            return self.error(41001, "access_token missing")
        state, owner = self.tokens.check(value)
        if owner is not None:
            return owner
        if state == TokenStore.EXPIRED:
            return self.error(self.expired_token_errcode, "access_token expired")
        return self.error(40014, "invalid access_token")

    def _emit(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)


def cli_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", action="append", default=[], help="a known user id (repeatable)")
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_cli(fake: Fake, host: str, port: int, registered: list[str]) -> None:
    """Serve until Ctrl-C or SIGTERM, printing every received message."""
    fake.echo = lambda line: print(line, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with FakeServer(fake.app(), host=host, port=port) as server:
        print(f"{type(fake).__name__} listening on {server.url}", flush=True)
        for line in registered:
            print(f"  {line}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
