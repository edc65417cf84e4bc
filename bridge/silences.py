"""Alertmanager silences through its API v2: made and ended for action links. Of an HA pair, one answer is enough
(the peers gossip silences to each other), so each Alertmanager of the config is tried in turn until one takes it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from bridge.actions import ActionSettings

logger = logging.getLogger(__name__)


class SilenceError(Exception):
    """No Alertmanager took the call; the message says what each answered (no credentials in it)."""


@dataclass(frozen=True)
class Silence:
    id: str
    alertmanager: str  # the base URL of the one that took it
    matchers: tuple[str, ...]  # name="value", as Alertmanager shows them
    ends: float


def _time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _where(base: str) -> str:
    """An Alertmanager as errors name it: without any user and password its URL holds."""
    return str(URL(base).with_user(None))


async def _call(
    session: aiohttp.ClientSession, settings: ActionSettings, method: str, path: str, body: Any = None
) -> tuple[str, Any]:
    """The first Alertmanager's answer (its base URL and JSON body) that is a 200; SilenceError if none is."""
    if not settings.alertmanagers:
        raise SilenceError("no Alertmanager is configured (web.actions.alertmanagers)")
    failures = []
    for base in settings.alertmanagers:
        try:
            timeout = aiohttp.ClientTimeout(total=settings.timeout)
            async with session.request(method, f"{base}{path}", json=body, timeout=timeout) as response:
                if response.status == 200:
                    return base, await response.json(content_type=None)
                failures.append(f"{_where(base)} answered {response.status}: {(await response.text())[:200]}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failures.append(f"{_where(base)}: {type(exc).__name__} {exc}".strip())
    logger.warning("alertmanager: %s %s failed: %s", method, path, "; ".join(failures))
    raise SilenceError("; ".join(failures))


async def create(
    session: aiohttp.ClientSession,
    settings: ActionSettings,
    labels: Mapping[str, str],
    seconds: float,
    created_by: str,
    comment: str,
) -> Silence:
    now = time.time()
    matchers = [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())]
    body = {"matchers": matchers, "startsAt": _time(now), "endsAt": _time(now + seconds),
            "createdBy": created_by, "comment": comment}  # fmt: skip
    base, answer = await _call(session, settings, "POST", "/api/v2/silences", body)
    if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
        raise SilenceError(f"{_where(base)} answered without a silenceID")
    shown = tuple(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return Silence(answer["silenceID"], base, shown, now + seconds)


async def expire(session: aiohttp.ClientSession, settings: ActionSettings, silence_id: str) -> None:
    await _call(session, settings, "DELETE", f"/api/v2/silence/{silence_id}")
