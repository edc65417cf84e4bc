"""Messages from Jinja2 templates in a sandbox: the shipped defaults, or a group's own overrides by name."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateNotFound
from jinja2.exceptions import SecurityError

from bridge import metrics
from bridge.actions import ActionSettings, digest_links, digest_subject, links, room
from bridge.model import ALERT_LEVELS, RESOLVED, STORM, Alarm, Channel, Format, Group, Mention, Message, Target
from bridge.sandbox import Bounded, Environment, Overrun

logger = logging.getLogger(__name__)

TRUNCATED = "\n…(truncated)"
LINES_KEPT = 4096  # digest lines kept for the other targets of the same alarm
# Every shipped template a message may need: a directory that lacks one cannot deliver some alarms at all.
_MESSAGE_PARTS = ("title.j2", "text.j2", "email.html.j2", "dingtalk.md.j2", "wecom.md.j2", "feishu.md.j2")
REQUIRED = (
    *(f"{source}/{name}" for source in ("native", "alertmanager") for name in _MESSAGE_PARTS),
    *("native/digest_title.j2", "native/digest.j2", "native/digest_line.j2", "native/actions.j2"),
    *(f"{source}/{name}" for source in ("native", "alertmanager") for name in ("summary.j2", "summary_title.j2")),
)


# What one message's body may carry, in UTF-8 bytes, leaving room for the request around it.
BUDGETS = {"dingtalk-robot": 18000, "dingtalk-app": 18000, "wecom-app": 2000, "wecom-appchat": 2000, "email": 500_000,
           "feishu-robot": 18000, "feishu-app": 15000}  # fmt: skip  # an app's content is JSON in the JSON: escaped
WECOM_ROBOT_BUDGETS = {"text": 2000, "markdown": 4000}
# A WeCom robot's markdown mentions of members ("<@userid>") live in the content: at most this many bytes of them.
WECOM_MENTION_ROOM = 1024


def budget(target: Target, group: Group) -> int:
    """What one message's body may carry: a message within it is one message upstream, one rate-limit slot."""
    if target.kind != "wecom-robot":
        return BUDGETS[target.kind]
    mentions = group.format is Format.MARKDOWN and group.mention is Mention.MEMBERS
    return WECOM_ROBOT_BUDGETS[group.format] - (WECOM_MENTION_ROOM if mentions else 0)


OVERRUN_PAUSE = 600.0  # seconds an override that overran its CPU time is not run


class RenderError(Exception):
    """A shipped template failed: no message can be made from it until it is fixed."""


class Renderer:
    def __init__(self, directories: Sequence[Path], actions: ActionSettings | None = None) -> None:
        self.directories = tuple(directories)  # the config's folder, laid over the shipped one: the first wins
        self.actions = actions
        self._env = Environment(self.directories)
        self._bounded = Bounded(self.directories)
        # Compiled overrides, or a failure to compile as its message: not tried again until changed.
        self._overrides: dict[str, Template | str] = {}
        # Overrides that overran, and when they may run again: not at every message (a loop that large will
        # overrun again), yet not never (the message may have been a digest that large, which may not come again).
        self._overran: dict[str, tuple[str, float]] = {}
        self._lines: dict[tuple[int, int], tuple[Alarm, Group, str]] = {}  # see _line

    def source(self, name: str) -> str:
        """A template's text as messages use it: the config's folder's, else the shipped one."""
        assert self._env.loader is not None
        return self._env.loader.get_source(self._env, name)[0]

    def problems(self) -> list[str]:
        """What keeps the shipped templates from rendering every message: those missing, those not valid Jinja2."""
        missing, broken = [], []
        for name in REQUIRED:
            try:
                self._env.get_template(name)
            except TemplateNotFound:
                missing.append(name)
            except Exception as exc:  # any error Jinja2 reports for a template's source
                broken.append(f"{name}: {type(exc).__name__}: {exc}")
        return ([f"missing {', '.join(missing)}"] if missing else []) + broken

    def render(self, name: str, alarm: Alarm, group: Group, **extra: object) -> tuple[str, str]:
        """The rendered text and, when a group's override failed and the default was used, why."""
        context = {"alarm": alarm, "group": group, **extra}
        override = group.templates.get(name)
        error = ""
        if override is not None:
            where = f"{group.id}/{group.level}/{name}"  # not the source: a changed character would not pause it
            try:
                overran = self._overran.get(where)
                if overran is not None and time.monotonic() < overran[1]:
                    raise SecurityError(overran[0])
                return self._bounded.bound(lambda: self._bounded.render(self._override(override), context)).strip(), ""
            except Exception as exc:  # a template is ops' code: it may raise anything
                if isinstance(exc, Overrun):
                    self._overran[where] = (str(exc), time.monotonic() + OVERRUN_PAUSE)
                error = f"template override {name!r} of group {group.id}/{group.level} failed: {exc}"
                logger.error("%s; using the default", error)
                metrics.TEMPLATE_ERRORS.inc()
        try:
            return self._env.get_template(name).render(context).strip(), error
        except Exception as exc:  # same as above; RenderError if the shipped template fails (nothing to fall back on)
            metrics.TEMPLATE_ERRORS.inc()
            raise RenderError(f"template {name} failed: {type(exc).__name__}: {exc}") from exc

    def _override(self, source: str) -> Template:
        """An override compiled (within the render's bounds: compiling folds constants), or its failure again."""
        compiled = self._overrides.get(source)
        if compiled is None:  # compiling is the costly part; overrides rarely change
            try:
                compiled = self._overrides[source] = self._bounded.from_string(source)
            except Exception as exc:  # the same source fails the same way: kept, without the objects of the try
                self._overrides[source] = str(exc)
                raise
        if isinstance(compiled, str):
            raise SecurityError(compiled)
        return compiled

    def message(self, alarm: Alarm, group: Group, channel: Channel) -> tuple[Message, list[str]]:
        """The message one channel sends, and the errors of any broken override (the default was used);
        RenderError if a shipped template fails."""
        folder = alarm.source
        names = {"title": f"{folder}/title.j2"}
        if "summary" in alarm.extra:  # a storm's summary (see bridge.storm)
            return self._summary(alarm, group, channel)
        if "notice" in alarm.extra:  # what someone did from an action link: one short line, as it is
            return Message(title=alarm.extra["notice"], body=alarm.extra["notice"], format=Format.TEXT), []
        if channel is Channel.EMAIL:
            names |= {"body": f"{folder}/text.j2", "html": f"{folder}/email.html.j2"}
        elif group.format is Format.MARKDOWN:
            names |= {"body": f"{folder}/{channel}.md.j2"}
        else:
            names |= {"body": f"{folder}/text.j2"}
        actions = links(self.actions, alarm)
        parts = {part: self.render(name, alarm, group, actions=actions) for part, name in names.items()}
        fmt = Format.MARKDOWN if "md.j2" in names["body"] else Format.TEXT
        mentions = alarm.extra.get("mentions", {})
        message = Message(
            title=parts["title"][0],
            body=parts["body"][0],
            format=fmt,
            html=parts.get("html", ("", ""))[0],
            mobiles=tuple(mentions.get("mobiles", ())),
            userids=tuple(mentions.get("userids", ())),
            level=RESOLVED if alarm.extra.get("status") == "resolved" else alarm.alert_level,
            actions=tuple((a["label"], a["url"]) for a in actions),
        )
        return message, [error for _, error in parts.values() if error]

    def _summary(self, alarm: Alarm, group: Group, channel: Channel) -> tuple[Message, list[str]]:
        fmt = Format.MARKDOWN if group.format is Format.MARKDOWN and channel is not Channel.EMAIL else Format.TEXT
        extra = {"summary": alarm.extra["summary"], "format": fmt.value, "channel": channel.value,
                 "actions": links(self.actions, alarm)}  # fmt: skip
        title, title_error = self.render(f"{alarm.source}/summary_title.j2", alarm, group, **extra)
        body, body_error = self.render(f"{alarm.source}/summary.j2", alarm, group, **extra)
        actions = tuple((a["label"], a["url"]) for a in extra["actions"])
        message = Message(title=title, body=body, format=fmt, level=STORM, actions=actions)
        return message, [e for e in (title_error, body_error) if e]

    def preview(self, alarm: Alarm, group: Group, channel: Channel) -> tuple[Message | None, list[str]]:
        """``message`` for showing to ops: where a shipped template fails, no message and why."""
        try:
            return self.message(alarm, group, channel)
        except RenderError as exc:
            return None, [str(exc)]

    def override_errors(self, alarm: Alarm, group: Group) -> list[str]:
        """The group's overrides that fail for this alarm, the shipped templates being used instead (a shipped
        template that fails is the delivery's outcome)."""
        found: set[str] = set()
        for channel in {t.channel for t in group.targets} if group.templates else ():
            with contextlib.suppress(RenderError):
                found.update(self.message(alarm, group, channel)[1])
        return sorted(found)

    def digest(self, alarms: Sequence[Alarm], group: Group, channel: Channel, budget: int) -> tuple[Message, int]:
        """One message listing, a line each, the first alarms that fit in ``budget`` UTF-8 bytes (at least one)."""
        lines: list[str] = []
        size = 100 + room(self.actions)  # the digest's heading and action links
        for alarm in alarms:
            line = self._line(alarm, group)
            size += len(line.encode()) + 8  # numbering and the line break
            if lines and size > budget:
                break
            lines.append(line)
        listed = list(alarms[: len(lines)])
        fmt = Format.MARKDOWN if group.format is Format.MARKDOWN and channel is not Channel.EMAIL else Format.TEXT
        actions = digest_links(self.actions, digest_subject(listed) if self.actions else None)
        extra = {"alarms": listed, "lines": lines, "format": fmt.value, "channel": channel.value, "actions": actions}
        title, _ = self.render("native/digest_title.j2", listed[0], group, **extra)
        body, _ = self.render("native/digest.j2", listed[0], group, **extra)  # one digest layout for every source
        level = min((a.alert_level for a in listed), key=lambda x: ALERT_LEVELS.index(x) if x in ALERT_LEVELS else 9)
        shown = tuple((a["label"], a["url"]) for a in actions)
        return Message(title=title, body=body, format=fmt, level=level, actions=shown), len(listed)

    def _line(self, alarm: Alarm, group: Group) -> str:
        """An alarm's digest line: the same for every target of its group, so rendered once for all of them.

        Kept by the objects' identity (an alarm holds a dict, so it has no hash) for the latest alarms; the entry
        holds the objects, so their ids are not reused while it is kept.
        """
        key = (id(alarm), id(group))
        kept = self._lines.get(key)
        if kept is not None:
            return kept[2]
        if len(self._lines) >= LINES_KEPT:
            self._lines.clear()
        line = self.render("native/digest_line.j2", alarm, group)[0]
        self._lines[key] = (alarm, group, line)
        return line


def truncated(bodies: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a message split off (``delivery.split`` false) went out cut short: its one request body holds the
    marker."""
    return len(bodies) == 1 and TRUNCATED.strip() in json.dumps(bodies[0], ensure_ascii=False)


def split(text: str, limit: int, numbered: bool = True, most: int = 0) -> list[str]:
    """Parts of at most ``limit`` UTF-8 bytes, cut at line ends where possible and never inside a character.

    With ``numbered``, each part of several starts with "(i/n)"; otherwise the text is cut once and marked.
    With ``most``, at most that many parts: the text is cut and marked to fit in them.
    """
    parts = _split(text, limit, numbered)
    size = limit * most
    while most and len(parts) > most:
        size = size * 9 // 10
        parts = _split(_cut(text, size - len(TRUNCATED.encode())) + TRUNCATED, limit, numbered)
    return parts


def _split(text: str, limit: int, numbered: bool) -> list[str]:
    if len(text.encode()) <= limit:
        return [text]
    if not numbered:
        return [_cut(text, limit - len(TRUNCATED.encode())) + TRUNCATED]
    prefix = len(b"(99/99)\n")
    while True:  # a hundred parts or more need a longer "(i/n)": cut again with room for it
        chunks = _balanced(_chunks(text, limit - prefix - _tag_room(text)))
        if len(f"({len(chunks)}/{len(chunks)})\n".encode()) <= prefix:
            return [f"({i}/{len(chunks)})\n{c}" for i, c in enumerate(chunks, 1)]
        prefix = len(f"({len(chunks)}/{len(chunks)})\n".encode())


_FONT = re.compile(r"<font\b[^>]*>|</font>")


def _tag_room(text: str) -> int:
    """The bytes a part may need to reopen and close the ``<font>`` tags open where it is cut."""
    depth = deepest = longest = 0
    for tag in _FONT.findall(text):
        depth = max(depth - 1, 0) if tag == "</font>" else depth + 1
        deepest, longest = max(deepest, depth), max(longest, len(tag.encode()))
    return deepest * (longest + len("</font>"))


def _balanced(chunks: list[str]) -> list[str]:
    """Each part well formed on its own: a ``<font>`` tag open at a cut is closed there and opened again in the
    next part, so that no part shows a stray tag or sits inside one that another part opened."""
    parts, carried = [], list[str]()
    for chunk in chunks:
        part, open_ = "".join(carried) + chunk, list(carried)
        for tag in _FONT.findall(chunk):
            if tag != "</font>":
                open_.append(tag)
            elif open_:
                open_.pop()
        parts.append(part + "</font>" * len(open_))
        carried = open_
    return parts


def _chunks(text: str, room: int) -> list[str]:
    """The text in pieces of at most ``room`` bytes; at least a character each, however small the room."""
    room = max(room, 4)  # the widest character in UTF-8
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > room:  # a line longer than a part is cut at a character boundary
            head = _cut(line, room - len(current.encode())) if current else _cut(line, room)
            chunks.append(current + head)
            current, line = "", line[len(head) :]
        if len((current + line).encode()) > room:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    return [c.rstrip("\n") for c in chunks if c.strip()]


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that fits in ``limit`` UTF-8 bytes."""
    return text.encode()[: max(limit, 0)].decode("utf-8", "ignore")
