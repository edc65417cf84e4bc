"""The JSON API under /api/v1: groups, test alarms, recent alarms and the audit log, for API tokens from the config."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge import jsontext
from bridge.gateway import Gateway
from bridge.model import ALERT_LEVELS, Channel, Group
from bridge.store import StoreError
from bridge.web import activity, audit, auth, forms, groups, listing, samples
from bridge.web.openapi import document
from bridge.web.pages import display_zone

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Call:
    request: Request
    gateway: Gateway
    caller: str  # "token:NAME"

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)


def reply(data: object, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def problem(status: int, error: str, **extra: object) -> Response:
    return reply({"error": error, **extra}, status)


def endpoint(handler: Callable[[Call], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """An API route: a valid bearer token first (401 otherwise, and nothing else is read)."""

    async def run(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        name = auth.api_caller(request, gateway.settings.web)
        if name is None:
            response = problem(401, "a valid API token is required: Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="alarm-bridge"'
            return response
        try:
            return await handler(Call(request, gateway, f"token:{name}"))
        except (StoreError, TimeoutError) as exc:
            logger.warning("api: store unavailable: %s", exc or "timed out")
            return problem(503, "the store is unavailable; try again shortly")

    return run


async def body(call: Call, default: Any = None) -> Any:
    """The JSON body (``default`` when it is empty and one is given), or a Response saying why there is none."""
    data = bytearray()
    async for chunk in call.request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            return problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not data:
        return problem(400, "a JSON body is required") if default is None else default
    try:
        return jsontext.loads(data)
    except (ValueError, RecursionError):
        return problem(400, "the body is not JSON")


@endpoint
async def list_groups(call: Call) -> Response:
    query = call.query("q").lower()
    found = [
        groups.masked(g, p)
        for g, p in await groups.everything(call.gateway)
        if not query or query in " ".join([g.id, g.level, g.name, *(m.name for m in g.members)]).lower()
    ]
    return reply({"groups": found})


def _input(data: Any) -> Any:
    """What a client read from this API may be sent back as it is: the fields it cannot set are dropped."""
    return {k: v for k, v in data.items() if k not in ("source", "provisioned")} if isinstance(data, dict) else data


def _names(call: Call) -> list[str]:
    return forms.template_names(call.gateway.settings.renderer.directories)


@endpoint
async def create_group(call: Call) -> Response:
    data = await body(call)
    if isinstance(data, Response):
        return data
    result = groups.build(_input(data), None, call.gateway.settings, template_names=_names(call))
    if not isinstance(result, Group):
        return problem(422, "the group is not valid", fields=result)
    if await groups.find(call.gateway, result.id, result.level) or not await groups.save(
        call.gateway, call.caller, result, None
    ):
        return problem(409, f"a group {result.id}/{result.level} already exists")
    return reply(groups.masked(result, False), 201)


@endpoint
async def get_group(call: Call) -> Response:
    found = await groups.find(call.gateway, call.param("id"), call.param("level"))
    if found is None:
        return problem(404, "no such group")
    return reply(groups.masked(*found))


@endpoint
async def put_group(call: Call) -> Response:
    """Create or replace; masked or missing webhooks and secrets keep the values at the same position."""
    id, level = call.param("id"), call.param("level")
    data = await body(call)
    if isinstance(data, Response):
        return data
    data = _input(data)
    if isinstance(data, dict):
        for key, value in (("id", id), ("level", level)):
            if str(data.setdefault(key, value)) != value:
                return problem(422, "the group is not valid", fields={key: f"must be {value!r}, as in the URL"})
    found = await groups.find(call.gateway, id, level)
    if found is not None and found[1]:
        return problem(403, f"the group is provisioned from {found[0].source} and read-only here")
    current = found[0] if found else None
    result = groups.build(data, current, call.gateway.settings, template_names=_names(call))
    if not isinstance(result, Group):
        return problem(422, "the group is not valid", fields=result)
    if result != current and not await groups.save(call.gateway, call.caller, result, current):
        return problem(409, "the group was changed or created meanwhile: read it again, then send the change")
    return reply(groups.masked(result, False), 200 if current else 201)


@endpoint
async def delete_group(call: Call) -> Response:
    found = await groups.find(call.gateway, call.param("id"), call.param("level"))
    if found is None:
        return problem(404, "no such group")
    if found[1]:
        return problem(403, f"the group is provisioned from {found[0].source} and read-only here")
    await groups.remove(call.gateway, call.caller, found[0])
    return Response(status_code=204)


@endpoint
async def test_group(call: Call) -> Response:
    found = await groups.find(call.gateway, call.param("id"), call.param("level"))
    if found is None:
        return problem(404, "no such group")
    data = await body(call, default={})
    if isinstance(data, Response):
        return data
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return problem(422, "expected a JSON object of strings: dep, env, alert_level, alert_business")
    level = data.get("alert_level", "低")
    if level not in ALERT_LEVELS:
        return problem(422, "the test alarm is not valid", fields={"alert_level": "expected 高, 中 or 低"})
    settings = call.gateway.settings
    dep = data.get("dep") or next(iter(sorted(settings.native.departments)), "test")
    env = data.get("env") or next(iter(sorted(settings.native.environments)), "dev")
    business = data.get("alert_business", "")
    alarm = samples.test_alarm(found[0], call.caller, dep, env, level, business, display_zone(call.gateway))
    result, deliveries = await samples.send_test(call.gateway, alarm)
    await audit.record(call.gateway.store, call.caller, "test.send", f"{found[0].id}/{found[0].level}",
                       f"code {int(result.code)}")  # fmt: skip
    return reply({"code": int(result.code), "msg": result.detail, "deliveries": [d.to_dict() for d in deliveries]})


def _time(value: str, call: Call) -> float | None:
    """Seconds since the epoch, or an ISO 8601 time (in the page's zone when it names none)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        zone = display_zone(call.gateway)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).timestamp()


@endpoint
async def list_alarms(call: Call) -> Response:
    code, limit = call.query("code"), call.query("limit", "100")
    if (code and not code.isdecimal()) or not limit.isdecimal():
        return problem(400, "code and limit are whole numbers")
    if call.query("state") not in ("", *listing.STATES):
        return problem(400, f"state is one of {', '.join(listing.STATES)}")
    try:
        since, until = _time(call.query("since"), call), _time(call.query("until"), call)
    except ValueError:
        return problem(400, "since and until are seconds since the epoch or ISO 8601 times")
    try:
        before = listing.cursor(call.query("before"))
    except ValueError:
        return problem(400, "before is the next value of the page before")
    query = {name: call.query(name) for name in (*listing.TEXT_FILTERS, "state")}
    filters = listing.filters(query, int(code) if code else None, since, until)
    found = await listing.page(call.gateway.store, filters, min(int(limit), 1000), before)
    await activity.with_acknowledgements(call.gateway.store, found.alarms)
    next_page = None if found.next is None else repr(found.next)
    return reply({"alarms": [r.to_dict() for r in found.alarms], "next": next_page, "scanned": found.scanned})


@endpoint
async def retry_delivery(call: Call) -> Response:
    job = await activity.retry(call.gateway.store, call.param("job"))
    if job is None:
        return problem(409, "only a dead delivery can be retried")
    await audit.record(call.gateway.store, call.caller, "delivery.retry", job.id)
    return reply({"id": job.id, "state": job.state.value})


@endpoint
async def preview(call: Call) -> Response:
    id, _, level = call.query("group").partition("/")
    found = await groups.find(call.gateway, id, level)
    if found is None:
        return problem(404, "no such group (group=ID/LEVEL)")
    channel = call.query("channel") or (found[0].targets[0].channel.value if found[0].targets else "dingtalk")
    sample = call.query("sample", "seed")
    if channel not in tuple(Channel) or sample not in samples.SAMPLES:
        return problem(400, f"channel is one of {', '.join(Channel)}; sample one of {', '.join(samples.SAMPLES)}")
    alarm = samples.sample_alarm(sample, found[0], call.gateway.settings.delivery.storm)
    message, errors = call.gateway.settings.renderer.preview(alarm, found[0], Channel(channel))
    data = None
    if message is not None:  # None: a shipped template failed, and errors says why
        data = {"title": message.title, "body": message.body, "format": message.format.value, "html": message.html}
    return reply({"channel": channel, "sample": sample, "message": data, "errors": errors})


@endpoint
async def list_mutes(call: Call) -> Response:
    return reply({"mutes": [m.to_dict() for m in await call.gateway.mutes.active()]})


@endpoint
async def lift_mute(call: Call) -> Response:
    lifted = await call.gateway.mutes.lift(call.param("mute"))
    if lifted is None:
        return problem(404, "no such mute in force")
    await audit.record(call.gateway.store, call.caller, "mute.lift", lifted.title, f"mute {lifted.id}")
    return reply({"lifted": lifted.to_dict()})


@endpoint
async def audit_log(call: Call) -> Response:
    limit, before = call.query("limit", "100"), call.query("before")
    if not limit.isdecimal() or (before and not before.isdecimal()):
        return problem(400, "limit and before are whole numbers")
    entries = await audit.entries(call.gateway.store, min(int(limit), 1000), int(before) if before else None)
    return reply({"entries": [e.to_dict() for e in entries]})


@endpoint
async def openapi(call: Call) -> Response:
    return reply(document())


def by_method(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for every method a path takes, so that any other is answered 405 with all of them in Allow."""

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))


KEY = "/api/v1/groups/{id}/{level}"
routes = [
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    by_method("/api/v1/groups", GET=list_groups, POST=create_group),
    by_method(KEY, GET=get_group, PUT=put_group, DELETE=delete_group),
    Route(f"{KEY}/test", test_group, methods=["POST"]),
    Route("/api/v1/alarms", list_alarms, methods=["GET"]),
    Route("/api/v1/deliveries/{job}/retry", retry_delivery, methods=["POST"]),
    Route("/api/v1/preview", preview, methods=["GET"]),
    Route("/api/v1/mutes", list_mutes, methods=["GET"]),
    Route("/api/v1/mutes/{mute}", lift_mute, methods=["DELETE"]),
    Route("/api/v1/audit", audit_log, methods=["GET"]),
]
