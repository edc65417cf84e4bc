"""The HTTP protocol the gateway serves with: uvicorn's, with a deadline for each request's headers and body, so
that a client that sends slowly, or stops halfway, is dropped rather than holding a connection for ever."""

from __future__ import annotations

import asyncio
import logging

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
