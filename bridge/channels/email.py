"""Email: one multipart/alternative message per alert to the group's members and the target's extra addresses."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Sequence
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.headerregistry import Address
from email.message import Message as MimeMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, getaddresses, make_msgid

import aiosmtplib
from aiosmtplib import SMTPResponse

from bridge.channels._http import Failure
from bridge.codes import Code
from bridge.config import DeliverySettings
from bridge.model import Email, Group, Member, Message, Outcome, Reason, Target, label
from bridge.upstreams import EmailSettings

logger = logging.getLogger(__name__)

IDLE = 30.0  # seconds a connection is kept unused for the next mail (servers commonly close after 60 s or more)


class Connections:
    """SMTP connections kept open for the next mail, as the HTTP session keeps HTTPS ones: one per mail in
    flight at most, reused within ``IDLE`` seconds of their last mail, all closed when the gateway stops."""

    def __init__(self) -> None:
        self._idle: list[tuple[tuple[EmailSettings, float], aiosmtplib.SMTP, float]] = []

    async def send(self, settings: EmailSettings, command_timeout: float, mail: MimeMessage) -> dict[str, SMTPResponse]:
        """Send on a kept connection to the same server, else on a new one; raises what aiosmtplib raises."""
        key = (settings, command_timeout)
        while self._idle:
            kept, client, since = self._idle.pop()
            if kept != key or time.monotonic() - since > IDLE or not client.is_connected:
                _drop(client)
                continue
            try:
                return await self._send_on(key, client, mail, connect=False)
            except aiosmtplib.SMTPServerDisconnected:
                continue  # the server closed it while idle: the mail goes on another connection
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username or None,
            password=settings.password if settings.username else None,
            timeout=command_timeout,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            validate_certs=settings.validate_certs,
        )
        return await self._send_on(key, client, mail, connect=True)

    async def _send_on(
        self, key: tuple[EmailSettings, float], client: aiosmtplib.SMTP, mail: MimeMessage, connect: bool
    ) -> dict[str, SMTPResponse]:
        try:
            if connect:
                await client.connect()
            refused, _ = await client.send_message(mail)
        except BaseException:
            _drop(client)  # a connection that failed once is not trusted with the next mail
            raise
        self._idle.append((key, client, time.monotonic()))
        return refused

    async def close(self) -> None:
        """Say goodbye on every kept connection (QUIT), within a second or two."""
        idle, self._idle = self._idle, []
        for _, client, _ in idle:
            try:
                async with asyncio.timeout(2):
                    await client.quit()
            except (aiosmtplib.SMTPException, TimeoutError, OSError):
                _drop(client)


class Sender:
    def __init__(self, settings: EmailSettings, delivery: DeliverySettings, connections: Connections) -> None:
        self._settings = settings
        self._timeout = delivery.timeout
        self._connections = connections

    def parts(self, target: Target, group: Group, message: Message) -> int:
        return 1  # a mail is one message, however long

    def preview(self, target: Target, group: Group, message: Message) -> list[str]:
        """The mail's headers and its parts, decoded (on the wire they are base64)."""
        recipients, _ = _recipients(group.members, target.to if isinstance(target, Email) else ())
        try:
            mail = self._compose(recipients, message)
        except (ValueError, HeaderParseError) as exc:
            return [f"(no mail: {exc})"]
        headers = "\n".join(f"{k}: {make_header(decode_header(v))!s}" for k, v in mail.items() if k != "Date")
        texts = [bytes(part.get_payload(decode=True)).decode() for part in mail.walk() if not part.is_multipart()]
        return ["\n\n".join([headers, *texts])]

    async def send(self, target: Target, group: Group, message: Message) -> Outcome:
        name = label(target)
        extra = target.to if isinstance(target, Email) else ()
        recipients, invalid = _recipients(group.members, extra)
        skipped = f"; skipped invalid addresses: {', '.join(invalid)}" if invalid else ""
        if not recipients:
            failure = Failure(Reason.CONFIG, False, f"no recipients: no member mail and no 'to' address{skipped}")
            return failure.outcome(name, Code.EMAIL_SEND)
        try:
            mail = self._compose(recipients, message)
        except (ValueError, HeaderParseError) as exc:
            return Failure(Reason.CONFIG, False, f"cannot build the message: {exc}").outcome(name, Code.EMAIL_SEND)
        result = await self._submit(mail)
        if isinstance(result, Failure):
            logger.warning("email to group %s/%s failed: %s", group.id, group.level, result.detail)
            return result.outcome(name, Code.EMAIL_SEND)
        detail = f"{len(recipients) - len(result)} of {len(recipients)} recipients accepted"
        later = tuple(addr for addr, r in result.items() if 400 <= r.code < 500)
        if result:
            refused = "; ".join(f"{addr} refused ({r.code} {r.message})" for addr, r in result.items())
            detail += f"; {self._scrub(refused)}" + ("; those refused for now are mailed again" if later else "")
            logger.warning("email to group %s/%s: %s", group.id, group.level, detail)
        return Outcome(target=name, ok=True, detail=detail + skipped, later=later)

    def _compose(self, recipients: Sequence[Address], message: Message) -> MimeMessage:
        """The mail, built with the classic API: the header registry's parsing cost more than sending it."""
        mail: MimeMessage = MIMEText(message.body, "plain", "utf-8")
        if message.html:
            mail = MIMEMultipart("alternative", _subparts=[mail, MIMEText(message.html, "html", "utf-8")])
        subject = " ".join(message.title.split())  # a header value may not hold line breaks
        mail["Subject"] = subject if subject.isascii() else Header(subject, "utf-8", header_name="Subject").encode()
        [(name, sender)] = getaddresses([self._settings.sender])
        if "@" not in sender:
            raise ValueError(f"email.sender is not an address: {self._settings.sender!r}")
        mail["From"] = formataddr((name, sender), "utf-8")
        mail["To"] = ", ".join(formataddr((a.display_name, a.addr_spec), "utf-8") for a in recipients)
        mail["Date"] = formatdate(usegmt=True)
        # An explicit domain: make_msgid would otherwise call socket.getfqdn(), which can block on DNS.
        mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
        return mail

    async def _submit(self, mail: MimeMessage) -> dict[str, aiosmtplib.SMTPResponse] | Failure:
        """The refused recipients of a delivered message, or why it was not delivered."""
        try:
            return await self._connections.send(self._settings, self._timeout, mail)
        except aiosmtplib.SMTPException as exc:
            failure = _classify(exc, self._timeout)
            return Failure(failure.reason, failure.retryable, self._scrub(failure.detail))
        except ssl.SSLCertVerificationError as exc:  # raised bare on STARTTLS, wrapped with implicit TLS
            return _untrusted(exc)
        except OSError as exc:  # TLS and socket errors that aiosmtplib lets through
            return Failure(Reason.NETWORK, True, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _scrub(self, text: str) -> str:
        """Servers should never echo a password, but a detail is logged and shown, so make sure."""
        return text.replace(self._settings.password, "***") if self._settings.password else text


def _drop(client: aiosmtplib.SMTP) -> None:
    """Close a connection at once: no QUIT, no TLS close_notify, nothing left for the event loop to finish."""
    if isinstance(client.transport, asyncio.Transport):
        client.transport.abort()
    client.close()


@functools.lru_cache(maxsize=256)
def _recipients(members: tuple[Member, ...], extra: tuple[str, ...]) -> tuple[tuple[Address, ...], tuple[str, ...]]:
    """Members (with their names) then the extra addresses, each once; and the addresses that do not parse.

    Kept per members and addresses: parsing them again at every mail cost half as much CPU as building it."""
    candidates = [(*_one_address(m.mail, m.name), m.mail) for m in members if m.mail.strip()]
    candidates += [(*_one_address(entry), entry) for entry in extra]
    seen: set[str] = set()
    valid: list[Address] = []
    invalid: list[str] = []
    for display, addr, written in candidates:
        try:
            address = Address(display_name=display.strip(), addr_spec=addr.strip())
        except (ValueError, IndexError, HeaderParseError):  # what the header parser raises for a bad addr-spec
            address = None
        if address is None or not address.username or not address.domain:
            invalid.append(repr(written))
        elif address.addr_spec.lower() not in seen:
            seen.add(address.addr_spec.lower())
            valid.append(address)
    return tuple(valid), tuple(invalid)


def _one_address(text: str, name: str = "") -> tuple[str, str]:
    """``ops@x`` or ``值班 <ops@x>``; anything else (two addresses in one entry, say) gives an empty address."""
    found = getaddresses([text])
    if len(found) != 1:
        return "", ""
    display, addr = found[0]
    return name or display, addr


def _classify(exc: aiosmtplib.SMTPException, timeout: float) -> Failure:
    """Timeouts, lost connections and 4xx replies may pass if tried again; 5xx replies and setup errors will not."""
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return Failure(Reason.TIMEOUT, True, f"no answer within {timeout:g}s: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
        temporary = bool(exc.recipients) and all(400 <= r.code < 500 for r in exc.recipients)
        return Failure(Reason.REJECTED, temporary, f"all recipients refused: {refused}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        temporary = 400 <= exc.code < 500
        reply = f"{exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and not temporary:
            return Failure(Reason.CONFIG, False, f"login refused (check email.username and email.password): {reply}")
        return Failure(Reason.REJECTED, temporary, f"{type(exc).__name__}: {reply}")
    if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return _untrusted(exc.__cause__)
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return Failure(Reason.NETWORK, True, exc.message)
    # STARTTLS or AUTH not offered, SMTPUTF8 not supported: the settings do not fit the server.
    return Failure(Reason.CONFIG, False, exc.message)


def _untrusted(exc: ssl.SSLCertVerificationError) -> Failure:
    hint = "trust its CA, or set email.validate_certs: false"
    return Failure(Reason.CONFIG, False, f"the server's certificate is not trusted ({exc.verify_message}); {hint}")
