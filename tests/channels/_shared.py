"""Helpers the channel tests share: which HTTP statuses are worth a retry, and the check that no secret leaked."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from bridge import config, config_file
from bridge.channels import Sender
from bridge.model import Group, Message, Target
from bridge.store import Store, open_store
from tests.fakes._fake import Fake

# An upstream's HTTP status -> whether trying again could help (rate limits and server trouble, not refusals).
STATUS_RETRYABLE: dict[int, bool] = {
    429: True,
    500: True,
    502: True,
    503: True,
    504: True,
    400: False,
    401: False,
    403: False,
    404: False,
}


def assert_no_secret(secrets: str | Iterable[str], *texts: str) -> None:
    """No secret (one, or several), raw or URL-encoded, appears in any of the texts (logs, details, reprs)."""
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        assert len(secret) >= 4, f"{secret!r} is too short to be a meaningful secret in a leak test"
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            for text in texts:
                assert form not in text, f"a secret leaked into: {text[:500]}"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as formatted text, tracebacks included, plus its message and raw arguments."""
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), str(record.exc_text or "")]
    return texts


# The loader's defaults, so that tests keep up with settings added later.
DEFAULTS = config_file.parse({}, "test.yaml")


def delivery(timeout: float = 5.0, split: bool = True) -> config.DeliverySettings:
    return replace(DEFAULTS.delivery, timeout=timeout, split=split)


def sqlite_store(folder: Path) -> Store:
    """A fresh embedded store in ``folder`` (close it at the end)."""
    return open_store(replace(DEFAULTS.store, url=f"sqlite:///{folder / 's.db'}", prefix=""))


def fail_after(fake: Fake, accepted: int, sends: str, status: int = 502) -> None:
    """The upstream answers ``status`` once, right after it took ``accepted`` messages (its log lines that hold
    ``sends``): a split message fails part-way."""
    taken = 0

    def echo(line: str) -> None:
        nonlocal taken
        taken += sends in line
        if sends in line and taken == accepted:
            fake.fail_next(1, status)

    fake.echo = echo


def numbered(texts: Iterable[str]) -> list[str]:
    """The "(i/n)" each part of a split message starts with."""
    return [text.split("\n", 1)[0] for text in texts]


async def assert_resumed_from_the_failed_part(
    sender: Sender, target: Target, group: Group, message: Message, fake: Fake, sends: str, got: Callable[[], list[str]]
) -> None:
    """A split message whose third part meets a 502 says so, and sent again from there, the group (what ``got``
    reads from the fake) has every part once, in order."""
    n = sender.parts(target, group, message)
    fail_after(fake, 2, sends)

    outcome = await sender.send(target, group, message)
    assert (outcome.ok, outcome.retryable, outcome.sent) == (False, True, 2)
    assert outcome.detail == f"part 3/{n}: HTTP 502"
    assert (await sender.send(target, group, replace(message, skip=2, chat=outcome.chat))).ok

    assert numbered(got()) == [f"({i}/{n})" for i in range(1, n + 1)]
