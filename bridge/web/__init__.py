"""The configuration page (/ui) and its JSON API (/api/v1)."""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    from bridge.web import act, api, ui

    return ui.routes + act.routes + api.routes
