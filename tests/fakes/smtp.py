"""A real SMTP server (aiosmtpd) for the tests, recording what it receives."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import LoginPassword

from tests.helpers import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    login: str | None
    peer: tuple[str, int]  # the client's address and port: one per connection

    def message(self) -> EmailMessage:
        # SMTP carries CRLF; get_content() would keep the CR of each line.
        parsed = email.message_from_bytes(self.raw.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what arrives; it can refuse recipients, answer DATA with a code, or stall."""

    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 Message accepted for delivery"
    stall: float = 0.0
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall:
            await asyncio.sleep(self.stall)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            envelope.original_content,
            session.ssl is not None,
            login,
            session.peer,
        )
        self.received.append(received)
        return self.data_reply


@contextmanager
def smtp_server(handler: Recorder, port: int = 0, **options: Any) -> Iterator[int]:
    """A real aiosmtpd server in its own thread, on a port picked beforehand (its start() cannot use port 0)."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class Printer(Recorder):
    """A Recorder that also prints each mail readably: its headers, and its text part decoded."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        mail = self.received[-1].message()
        text = mail.get_body(("plain",))
        print(f"--- mail from {mail['From']} to {mail['To']}\nSubject: {mail['Subject']}", flush=True)
        print(text.get_content() if isinstance(text, EmailMessage) else "(no text part)", flush=True)
        return reply


def main(argv: list[str] | None = None) -> None:
    import argparse
    import threading

    parser = argparse.ArgumentParser(description="A local SMTP server that prints every mail it receives")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with smtp_server(Printer(), args.port) as port:
        print(f"smtp: 127.0.0.1:{port}", flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
