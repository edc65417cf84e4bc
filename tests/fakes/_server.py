from __future__ import annotations

import asyncio
import json
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

from aiohttp import web
from aiohttp.typedefs import Handler

T = TypeVar("T")
Clock = Callable[[], float]


class FakeServer:
    """Serve an aiohttp app from a background thread with its own event loop."""

    def __init__(
        self,
        app: web.Application,
        ssl_context: ssl.SSLContext | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 0.5,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("FakeServer already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"FakeServer:{self.port}")
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), self._loop).result(timeout=10)
        except BaseException:
            sock.close()
            self.stop()
            raise

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()


class ManualClock:
    """A monotonic clock that only moves when told to; inject it to skip real waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RateLimiter:
    """Sliding window: at most `limit` allowed hits per key within any `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True


class Records(Sequence[T]):
    """A list that the server thread appends to and the test thread reads or waits on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._cond = threading.Condition()

    def append(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[T]:
        """Block until at least `count` items exist; return a snapshot or raise TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(f"expected {count} records, have {len(self._items)}")
            return list(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        with self._cond:
            return self._items[index]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        with self._cond:
            return iter(list(self._items))

    def __repr__(self) -> str:
        return f"Records({self[:]!r})"


class Faults:
    """Outage controls applied to every request: hang first, then fail the next n."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hang = 0.0
        self._fail_left = 0
        self._fail_status = 500

    def hang(self, seconds: float) -> None:
        with self._lock:
            self._hang = seconds

    def unhang(self) -> None:
        self.hang(0.0)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._fail_left, self._fail_status = n, status

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return self._fail_left

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self._lock:
            seconds = self._hang
        if seconds > 0:
            await asyncio.sleep(seconds)  # a stopping FakeServer cancels it after shutdown_timeout
        with self._lock:
            status = self._fail_status if self._fail_left > 0 else 0
            self._fail_left = max(self._fail_left - 1, 0)
        if status:
            return web.Response(status=status, text=f"fake upstream failure {status}")
        return await handler(request)


@dataclass
class _Token:
    owner: str
    expires_at: float
    revoked: bool = False


class TokenStore:
    """Access tokens per owner (an app): the same token while valid, then a new one."""

    VALID, EXPIRED, INVALID = "valid", "expired", "invalid"

    def __init__(self, ttl: float, clock: Clock, *, renew: bool) -> None:
        self.ttl = ttl
        self._clock = clock
        self._renew = renew
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}

    def issue(self, owner: str) -> tuple[str, int]:
        """Return (token, expires_in seconds)."""
        with self._lock:
            now = self._clock()
            for value, token in self._tokens.items():
                if token.owner == owner and not token.revoked and token.expires_at > now:
                    if self._renew:
                        token.expires_at = now + self.ttl
                    return value, round(token.expires_at - now)
            value = secrets.token_hex(24)
            self._tokens[value] = _Token(owner, now + self.ttl)
            return value, round(self.ttl)

    def check(self, value: str) -> tuple[str, str | None]:
        """Return (state, owner); owner is None unless the state is VALID."""
        with self._lock:
            token = self._tokens.get(value)
            if token is None or token.revoked:
                return self.INVALID, None
            if token.expires_at <= self._clock():
                return self.EXPIRED, None
            return self.VALID, token.owner

    def expire_all(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, self._clock())

    def revoke_all(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True


def reply(errcode: int, errmsg: str = "ok", **extra: Any) -> web.Response:
    """The vendors' error style: HTTP 200 with errcode/errmsg in a JSON body."""
    return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})


def parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON value, however deep: what a robot's keyword check searches."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
