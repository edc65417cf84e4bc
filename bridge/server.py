"""How the gateway speaks HTTP: uvicorn's protocol with a deadline for each request's headers and body (a client that
sends slowly, or stops halfway, is dropped rather than holding a connection for ever), and refusals drained."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.config import ServerSettings

logger = logging.getLogger(__name__)


class Guarded(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # from the first byte on, whether or not one comes

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        logger.info("dropped a client too slow to send its request: %s", self.client)
        self.transport.close()


def protocol(settings: ServerSettings) -> type[Guarded]:
    """The protocol with the config's deadlines."""
    return type(
        "Configured", (Guarded,), {"header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout}
    )


DRAIN_BYTES = 1024 * 1024  # of a body a refusal did not read, read before replying (slow senders: body_timeout)


class Drained:
    """A reply that leaves the request's body unread (a 401, a body over its limit) is sent only after reading the
    rest of it, up to DRAIN_BYTES: closing with unread data makes the kernel reset the connection, and the client
    may then never see the reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (b"expect", b"100-continue") in scope["headers"]:
            await self.app(scope, receive, send)  # a client that waits for 100 Continue has sent no body
            return
        read_all = False

        async def tracked() -> Message:
            nonlocal read_all
            message = await receive()
            read_all = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_after_drain(message: Message) -> None:
            left = DRAIN_BYTES
            while message["type"] == "http.response.start" and not read_all and left > 0:
                left -= len((await tracked()).get("body", b""))
            await send(message)

        await self.app(scope, tracked, send_after_drain)
