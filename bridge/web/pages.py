"""What every page shares: the Jinja2 environment, the login check, the CSRF check, forms and headers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bridge.gateway import Gateway
from bridge.store import StoreError
from bridge.web import auth

logger = logging.getLogger(__name__)

MAX_FORM_BYTES = 1024 * 1024
# No scripts at all; styles from our own stylesheet only; no framing; forms post back to us only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Form = dict[str, list[str]]


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _when(timestamp: float | None, zone: tzinfo) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M:%S")


templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["segment"] = lambda value: quote(str(value), safe="")


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def display_zone(gateway: Gateway) -> tzinfo:
    """Times on the page are in the zone messages use (``alertmanager.timezone``, Asia/Shanghai by default)."""
    return _zone(gateway.settings.alertmanager.timezone)


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    gateway: Gateway = request.app.state.gateway
    zone = display_zone(gateway)
    context = {"user": None, "csrf": "", "notice": None, **context}
    html = templates.get_template(template).render(
        request=request, when=lambda t: _when(t, zone), zone=str(zone), **context
    )
    return secured(HTMLResponse(html, status_code=status))


def error_page(request: Request, status: int, title: str, message: str, **context: Any) -> Response:
    return render(request, "error.html", status=status, title=title, message=message, **context)


async def read_form(request: Request) -> Form | None:
    """An url-encoded form (the only kind the page sends; parsed here, without a multipart parser), or None."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5000)
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True)
class Page:
    """A request from a logged-in user; for a POST, its form, whose CSRF token was checked."""

    request: Request
    gateway: Gateway
    session: auth.Session
    form: Form

    def value(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0] if values else default

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return render(self.request, template, status, user=self.session.user, csrf=self.session.csrf, **context)

    def error(self, status: int, title: str, message: str) -> Response:
        return self.render("error.html", status=status, title=title, message=message)


Handler = Callable[[Page], Awaitable[Response]]


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    next_page = quote(target, safe="/") if request.method == "GET" else ""
    return secured(RedirectResponse(f"/ui/login?next={next_page}" if next_page else "/ui/login", status_code=303))


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page for logged-in users only: anyone else is sent to the login page, and a POST must carry the CSRF token."""

    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            session = await auth.current_session(request, gateway.settings.web, gateway.store)
            if session is None:
                return login_redirect(request)
            form: Form = {}
            if request.method == "POST":
                parsed = await read_form(request)
                if parsed is None:
                    return error_page(request, 400, "Bad request", "The form could not be read.")
                form = parsed
                if not auth.csrf_ok(session.csrf, (form.get("csrf") or [""])[0]):
                    logger.warning("web: a form from %s without a valid CSRF token", auth.client_address(request))
                    return error_page(
                        request, 403, "Form expired", "The form's security token is missing or stale: nothing was "
                        "changed. Go back, reload the page and try again.", user=session.user, csrf=session.csrf
                    )  # fmt: skip
            return secured(await handler(Page(request, gateway, session, form)))
        except (StoreError, TimeoutError) as exc:
            logger.warning("web: store unavailable: %s", exc or "timed out")
            return error_page(request, 503, "Store unavailable", "The store did not answer; try again shortly.")

    return endpoint


def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)
