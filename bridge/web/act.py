"""The confirmation page of action links, /ui/act/{token}: a GET only shows what will happen (link previews and chat
unfurlers fetch it), the page's POST (CSRF-protected) acts. A link acts once."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge import metrics, silences, storm
from bridge.actions import ACK, SUBJECT, USED, ActionSettings, Kind, Link, Refused, Subject, read, span, url
from bridge.codes import Code
from bridge.gateway import Gateway, find_group
from bridge.model import Alarm
from bridge.store import StoreError
from bridge.web import audit, auth
from bridge.web.pages import error_page, login_redirect, read_form, render

logger = logging.getLogger(__name__)

SILENCE = "act:silence:"  # a silence made from a link: its subject, for the link that ends it early
ACK_TTL = 30 * 86400.0
CHAT_LINK = "chat link"  # who acted, when nobody logged in


@dataclass(frozen=True)
class Visit:
    request: Request
    gateway: Gateway
    settings: ActionSettings
    token: str
    link: Link
    subject: Subject
    who: str
    user: str | None  # the logged-in user, if any
    csrf: str


def _refused(request: Request, status: int, title: str, message: str) -> Response:
    return error_page(request, status, title, f"{message}. Nothing was done.", user=None, csrf="")


async def act(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings.web.actions
    if settings is None:
        return _refused(request, 404, "Action links are off", "This alarm-bridge has no web.actions.key")
    try:
        return await _act(request, gateway, settings)
    except (StoreError, TimeoutError) as exc:
        logger.warning("web: store unavailable: %s", exc or "timed out")
        return error_page(request, 503, "Store unavailable", "The store did not answer; nothing was done. Try again.")


async def _act(request: Request, gateway: Gateway, settings: ActionSettings) -> Response:
    token = request.path_params["token"]
    link = read(settings.key, token)
    if isinstance(link, Refused):
        metrics.ACTIONS.labels(action="unknown", result="expired" if link.expired else "forged").inc()
        title = "This link is expired" if link.expired else "Not a valid link"
        return _refused(request, 410 if link.expired else 403, title, link.message)
    if (used := await gateway.store.get(USED + token)) is not None:
        metrics.ACTIONS.labels(action=link.kind.value, result="reused").inc()
        return _refused(request, 410, "This link was used already", json.loads(used)["done"])
    session = await auth.current_session(request, gateway.settings.web, gateway.store)
    if settings.require_login and session is None:
        return login_redirect(request)
    raw = await gateway.store.get((SILENCE if link.kind is Kind.EXPIRE else SUBJECT) + link.subject)
    if raw is None:
        return _refused(request, 410, "No longer known", "alarm-bridge no longer holds what this link acts on")
    csrf, new_cookie = (session.csrf, False) if session else auth.login_token(request)
    visit = Visit(request, gateway, settings, token, link, Subject.from_json(raw),
                  session.user if session else CHAT_LINK, session.user if session else None, csrf)  # fmt: skip
    if request.method != "POST":
        response = render(request, "act.html", user=visit.user, csrf=csrf, visit=visit, plan=_plan(visit))
        if new_cookie:
            auth.set_cookie(request, response, auth.LOGIN_COOKIE, csrf, 3600)
        return response
    form = await read_form(request) or {}
    if new_cookie or not auth.csrf_ok(csrf, (form.get("csrf") or [""])[0]):
        return _refused(request, 403, "Form expired", "The page's security token is missing or stale: open the "
                        "link again")  # fmt: skip
    return await _confirmed(visit)


def _plan(visit: Visit) -> str:
    link, subject = visit.link, visit.subject
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + link.duration))
    group = "/".join(subject.group)
    if link.kind is Kind.SILENCE:
        count = len(subject.silences)
        each = "; ".join("{" + ", ".join(_matchers(labels)) + "}" for labels in subject.silences)
        what = (
            "an Alertmanager silence" if count == 1 else f"{count} Alertmanager silences, one per notification group,"
        )
        return f"Create {what} for {span(link.duration)} (until {until}) of {each}."
    if link.kind is Kind.MUTE:
        business = "any business" if subject.business is None else repr(subject.business)
        host = "any host" if subject.host is None else f"host {subject.host or '(none)'!r}"
        return (f"Mute alarms of group {group} for {business} on {host} for {span(link.duration)} (until {until}): "
                "they are recorded as muted and not sent.")  # fmt: skip
    if link.kind is Kind.ACK:
        what = f"these {len(subject.members)} alarms" if subject.members else "it"
        return f"Record that {visit.who} acknowledged {what}; the storm summaries of group {group} stop."
    return f"End the Alertmanager silence {link.subject} now."


def _matchers(labels: Mapping[str, str]) -> list[str]:
    return [f'{k}="{v}"' for k, v in sorted(labels.items())]


async def _confirmed(visit: Visit) -> Response:
    gateway, link, subject = visit.gateway, visit.link, visit.subject
    ttl = max(link.expires - time.time(), 0) + 60
    record = {"who": visit.who, "at": time.time(), "done": "in progress"}
    if not await gateway.store.put_new(USED + visit.token, json.dumps(record), ttl):  # two clicks: one acts
        metrics.ACTIONS.labels(action=link.kind.value, result="reused").inc()
        return _refused(visit.request, 410, "This link was used already", "Someone used it a moment ago")
    try:
        done, notice, extra = await _perform(visit)
    except (silences.SilenceError, StoreError, TimeoutError) as exc:
        with contextlib.suppress(StoreError, TimeoutError):  # nothing happened: the link may be tried again
            await gateway.store.delete(USED + visit.token)
        metrics.ACTIONS.labels(action=link.kind.value, result="failed").inc()
        if not isinstance(exc, silences.SilenceError):
            raise
        return error_page(visit.request, 502, "Alertmanager did not take it", f"Nothing was done ({exc}). Try "
                          "again shortly.", user=visit.user, csrf=visit.csrf)  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    record["done"] = f"{done} by {visit.who} at {when}"
    await gateway.store.put(USED + visit.token, json.dumps(record), ttl)
    address = auth.client_address(visit.request)
    await audit.record(gateway.store, visit.who, f"action.{link.kind}", subject.title, f"{done}; from {address}")
    metrics.ACTIONS.labels(action=link.kind.value, result="done").inc()
    sent = await gateway.accept(_notice(subject, f"{notice} by {visit.who}"), wait=0)
    if sent.code in (Code.STORE_DOWN, Code.NO_GROUP):  # done all the same: the group just does not hear of it
        logger.warning("web: the group %s was not told of an action: %s", "/".join(subject.group), sent.code.meaning)
    return render(visit.request, "act.html", user=visit.user, csrf=visit.csrf, visit=visit, done=record["done"],
                  **extra)  # fmt: skip


async def _perform(visit: Visit) -> tuple[str, str, dict[str, Any]]:
    """Do what the link says: what was done (for the page and the audit), the group's notice, and more for the
    page; SilenceError if Alertmanager did not take it."""
    gateway, link, subject, settings = visit.gateway, visit.link, visit.subject, visit.settings
    if link.kind is Kind.SILENCE:
        made = await _silence(visit)
        ids = ", ".join(m.id for m, _ in made)
        done = f"silence{'s' if len(made) > 1 else ''} {ids} for {span(link.duration)}"
        return done, f"已静默 {span(link.duration)}: {subject.title}", {"silences": made}
    if link.kind is Kind.MUTE:
        mute = await gateway.mutes.add(subject.group, subject.business, subject.host, link.duration, visit.who,
                                       subject.title)  # fmt: skip
        return f"mute {mute.id} for {span(link.duration)}", f"已静默 {span(link.duration)}: {subject.title}", {}
    if link.kind is Kind.ACK:
        by = json.dumps({"by": visit.who, "at": time.time()})
        for acknowledged in (subject.id, *subject.members):  # a digest's: each alarm it holds
            await gateway.store.put(ACK + acknowledged, by, ACK_TTL)
        group = await find_group(gateway.settings, gateway.store, *subject.group)
        storms = await storm.acknowledge(gateway.store, group.targets if group else (), visit.who)
        quiet = f"; storm {', '.join(storms)} sends no more summaries" if storms else ""
        return f"acknowledged{quiet}", f"已认领: {subject.title}", {}
    session = visit.request.app.state.http
    await silences.expire(session, settings, link.subject)
    await gateway.store.delete(SILENCE + link.subject)
    return f"silence {link.subject} expired", f"已解除静默: {subject.title}", {}


async def _silence(visit: Visit) -> list[tuple[silences.Silence, str]]:
    """The subject's silences (one each notification group), each with a link that ends it early; if one is not
    made, those made are ended again (best effort) and nothing was done."""
    subject, settings, link = visit.subject, visit.settings, visit.link
    session: aiohttp.ClientSession = visit.request.app.state.http
    comment = f"{subject.title}: silenced from a chat link (alarm-bridge, group {'/'.join(subject.group)})"
    made: list[tuple[silences.Silence, str]] = []
    try:
        for labels in subject.silences:
            silence = await silences.create(session, settings, labels, link.duration, visit.who, comment)
            made.append((silence, url(settings, Link(Kind.EXPIRE, 0, silence.id, int(silence.ends)))))
            await visit.gateway.store.put(SILENCE + silence.id, subject.to_json(), silence.ends - time.time() + 60)
    except (silences.SilenceError, StoreError, TimeoutError):
        for silence, _ in made:
            with contextlib.suppress(silences.SilenceError):
                await silences.expire(session, settings, silence.id)
        raise
    return made


def _notice(subject: Subject, text: str) -> Alarm:
    """The short message to the group that says what was done: through the outbox, within its rate limits."""
    return Alarm(
        id=subject.group[0], level=subject.group[1], dep=subject.dep, env=subject.env, alert_level="低",
        alert_time=time.strftime("%Y-%m-%d %H:%M:%S"), alert_business=text, extra={"notice": text},
        identity=f"notice:{uuid.uuid4().hex}",
    )  # fmt: skip


routes = [Route("/ui/act/{token}", act, methods=["GET", "POST"])]
