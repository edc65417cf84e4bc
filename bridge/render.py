"""Messages from Jinja2 templates in a sandbox: the shipped defaults, or a group's own overrides by name."""

from __future__ import annotations

import logging
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from bridge.model import Alarm, Group

logger = logging.getLogger(__name__)


class Renderer:
    def __init__(self, directory: Path) -> None:
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html.j2"], default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
        )

    def render(self, name: str, alarm: Alarm, group: Group) -> tuple[str, str]:
        """The rendered text and, when a group's override failed and the default was used, why."""
        context = {"alarm": alarm, "group": group}
        override = group.templates.get(name)
        error = ""
        if override is not None:
            try:
                return self._env.from_string(override).render(context).strip(), ""
            except TemplateError as exc:
                error = f"template override {name!r} of group {group.id}/{group.level} failed: {exc}"
                logger.error("%s; using the default", error)
        return self._env.get_template(name).render(context).strip(), error
