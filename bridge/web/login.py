"""The login page under /ui/login, logging out, and the stylesheet the login page needs."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from bridge.gateway import Gateway
from bridge.store import StoreError
from bridge.web import audit, auth
from bridge.web.pages import Page, error_page, page, read_form, render, secured, see_other

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


async def stylesheet(request: Request) -> Response:
    """The one public file besides the login page: it holds no data."""
    return FileResponse(STATIC / "style.css", media_type="text/css", headers={"Cache-Control": "max-age=300"})


def _safe_next(target: str) -> str:
    """Only a page of ours: never another site (``//evil`` or an absolute URL)."""
    return target if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target else "/ui/groups"


async def login(request: Request) -> Response:
    try:
        return await _login(request)
    except (StoreError, TimeoutError) as exc:
        logger.warning("web: store unavailable: %s", exc or "timed out")
        return error_page(request, 503, "Store unavailable", "The store did not answer; try again shortly.")


async def _login(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    web = gateway.settings.web
    token, new_token = auth.login_token(request)
    next_page = _safe_next(request.query_params.get("next", ""))

    def show(status: int = 200, error: str = "", user: str = "") -> Response:
        response = render(request, "login.html", status, token=token, next=next_page, error=error, name=user,
                          no_users=not web.users)  # fmt: skip
        if new_token:
            auth.set_cookie(request, response, auth.LOGIN_COOKIE, token, 3600)
        return response

    if request.method == "GET":
        if await auth.current_session(request, web, gateway.store):
            return secured(see_other(next_page))
        return show()
    form = await read_form(request) or {}
    user, password = (form.get("user") or [""])[0], (form.get("password") or [""])[0]
    if new_token or not auth.csrf_ok(token, (form.get("csrf") or [""])[0]):
        return show(403, "The login form expired: please try again.", user)
    address = auth.client_address(request)
    slot = await auth.reserve_login(gateway.store, web, address)
    if slot is None:
        logger.warning("web: login refused for %s: too many failed logins", address)
        minutes = max(1, round(web.login_window / 60))
        return show(429, f"Too many failed logins from your address: try again in up to {minutes} minutes.", user)
    # An unknown name is not logged: it is often a password typed into the wrong field.
    who = repr(user) if user in web.users else "an unknown user"
    wait = await auth.user_turn(gateway.store, web, user)
    if wait:
        await gateway.store.delete(slot)  # the address did not try: its slot is given back
        logger.warning("web: login refused for %s from %s: too many failed logins for the name", who, address)
        return show(429, f"Too many failed logins for this user: try again in {wait:.0f} seconds.", user)
    if not await auth.check_login(web, user, password):
        logger.warning("web: failed login for %s from %s", who, address)
        await auth.user_failed(gateway.store, web, user)
        return show(401, "Wrong user name or password.", user)
    await gateway.store.delete(slot)
    await auth.user_succeeded(gateway.store, user)
    response = see_other(next_page)
    await auth.start_session(request, response, web, gateway.store, user)
    response.delete_cookie(auth.LOGIN_COOKIE, path=auth.COOKIE_PATH)
    await audit.record(gateway.store, user, "login", address)
    return secured(response)


@page
async def logout(p: Page) -> Response:
    response = see_other("/ui/login")
    await auth.end_session(p.request, response, p.gateway.store, p.session)
    await audit.record(p.gateway.store, p.session.user, "logout", auth.client_address(p.request))
    return response
