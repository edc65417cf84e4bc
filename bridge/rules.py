"""rules/*.yaml: Alertmanager label matchers pick an alert's target group; sources map its labels to alarm fields.

A rules file is a ruleset (``rules/db.yaml`` serves ``POST /alertmanager/db``; ``default.yaml`` serves
``/alertmanager``). Routes are tried in order: the first that matches wins unless it says ``continue: true``;
an alert that no route matches goes to the ruleset's (required) ``fallback``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bridge.matchers import Matcher, parse_matchers
from bridge.model import ALERT_LEVELS
from bridge.schema import ConfigError, Node

_RULESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

TARGET_KEYS = ("id", "level", "dep", "env")
DEFAULT_LEVELS = {"critical": "高", "error": "高", "warning": "中", "info": "低"}
DEFAULT_STATUSES = {"firing": "告警中", "resolved": "已恢复"}
# Where each alarm field comes from by default: the first source with a value wins.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "severity": ("label:severity",),  # looked up in `levels` to give alert_level
    "alert_business": ("label:alertname",),
    "alert_host": ("label:instance",),
    "alert_ip": ("label:ip",),
    "alert_function": ("label:job",),
    "exception_spec": ("annotation:summary", "annotation:description", "annotation:message"),
    "notes": ("annotation:runbook_url",),
    "others": (),
}
DEFAULT_MENTIONS: dict[str, tuple[str, ...]] = {
    "mobiles": ("annotation:mention_mobiles", "label:mention_mobiles"),
    "userids": ("annotation:mention_userids", "label:mention_userids"),
}
MAX_JOINED = 3  # distinct values named when a field differs between the alerts of one message


@dataclass(frozen=True)
class Source:
    """Where a value comes from: an alert's label or annotation, or literal text."""

    kind: str  # label | annotation | text
    name: str

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, sep, name = text.partition(":")
        if sep and kind in ("label", "annotation"):
            if not name:
                raise ValueError(f"{text!r}: name the {kind}, e.g. {kind}:instance")
            return cls(kind, name)
        return cls("text", name if sep and kind == "text" else text)

    def value(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        if self.kind == "text":
            return self.name
        return (labels if self.kind == "label" else annotations).get(self.name, "").strip()


def resolve(sources: Sequence[Source], alerts: Iterable[tuple[Mapping[str, str], Mapping[str, str]]]) -> str:
    """The first source with a value; over several alerts, their distinct values (a few named, then a count)."""
    pairs = list(alerts)
    for source in sources:
        values = list(dict.fromkeys(v for labels, annotations in pairs if (v := source.value(labels, annotations))))
        if len(values) > MAX_JOINED:
            return f"{', '.join(values[:MAX_JOINED])} 等 {len(values)} 个"
        if values:
            return ", ".join(values)
    return ""


@dataclass(frozen=True)
class Route:
    name: str
    where: str  # "rules/db.yaml: routes[2]", for messages
    matchers: tuple[Matcher, ...]
    continue_: bool
    target: Mapping[str, tuple[Source, ...]]  # id, level, dep, env
    fields: Mapping[str, tuple[Source, ...]]
    levels: Mapping[str, str]  # severity (lower case) -> 高 | 中 | 低
    default_level: str
    statuses: Mapping[str, str]  # firing | resolved -> the alarm's status text
    mentions: Mapping[str, tuple[Source, ...]]  # mobiles, userids

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def level(self, severity: str) -> str:
        return self.levels.get(severity.strip().lower(), self.default_level)


@dataclass(frozen=True)
class Ruleset:
    name: str
    file: str
    routes: tuple[Route, ...]
    fallback: Route

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with these labels takes: the first match, more with ``continue``, or the fallback."""
        matched = []
        for route in self.routes:
            if route.matches(labels):
                matched.append(route)
                if not route.continue_:
                    break
        return matched or [self.fallback]


def load(folder: Path) -> dict[str, Ruleset]:
    """Every ``*.yaml`` in the folder, by name (the file's stem); ConfigError names the file and key at fault."""
    if not folder.is_dir():
        return {}
    return {path.stem: load_file(path) for path in sorted(folder.glob("*.yaml"))}


def load_file(path: Path) -> Ruleset:
    file = str(path)
    if not _RULESET_NAME.match(path.stem):
        raise ConfigError(f"{file}: the file name must be letters, digits, '.', '_' or '-' (it is a URL path part)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse(data or {}, file, path.stem)


def parse(data: object, file: str, name: str) -> Ruleset:
    top = Node(file, "", data, environment=True)
    top.only("defaults", "routes", "fallback")
    if "fallback" not in top.data:
        raise top.fail("fallback", "is required: the route for alerts that no other route matches")
    defaults = top.child("defaults")
    defaults.only(*_SETTINGS)
    base = _settings(defaults, _Settings())
    routes = []
    for node in top.children("routes"):
        node.only("name", "matchers", "continue", *_SETTINGS)
        routes.append(_route(node, base, _matchers(node), node.text("name", node.path)))
    fallback = top.child("fallback")
    fallback.only("name", *_SETTINGS)
    return Ruleset(name, file, tuple(routes), _route(fallback, base, (), fallback.text("name", "fallback")))


_SETTINGS = ("target", "fields", "levels", "default_level", "statuses", "mentions")


def _parsed(table: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[Source, ...]]:
    return {key: tuple(map(Source.parse, sources)) for key, sources in table.items()}


@dataclass(frozen=True)
class _Settings:
    """What a route may set, and the ruleset's ``defaults`` too."""

    target: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    fields: Mapping[str, tuple[Source, ...]] = field(default_factory=lambda: _parsed(DEFAULT_FIELDS))
    levels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    default_level: str = "中"
    statuses: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUSES))
    mentions: Mapping[str, tuple[Source, ...]] = field(default_factory=lambda: _parsed(DEFAULT_MENTIONS))


def _settings(node: Node, base: _Settings) -> _Settings:
    """The settings in ``node`` over ``base``, key by key."""
    levels = node.child("levels")
    statuses = node.child("statuses")
    statuses.only("firing", "resolved")
    return _Settings(
        target={**base.target, **_sources(node.child("target"), TARGET_KEYS)},
        fields={**base.fields, **_sources(node.child("fields"), tuple(DEFAULT_FIELDS))},
        levels={**base.levels, **{str(k).lower(): _level(levels, str(k)) for k in levels.data}},
        default_level=_level(node, "default_level") if "default_level" in node.data else base.default_level,
        statuses={**base.statuses, **{str(k): statuses.text(str(k)) for k in statuses.data}},
        mentions={**base.mentions, **_sources(node.child("mentions"), tuple(DEFAULT_MENTIONS))},
    )


def _level(node: Node, key: str) -> str:
    value = node.text(key)
    if value not in ALERT_LEVELS:
        raise node.fail(key, f"expected one of {', '.join(ALERT_LEVELS)}, got {value!r}")
    return value


def _sources(node: Node, allowed: tuple[str, ...]) -> dict[str, tuple[Source, ...]]:
    """``key: source`` or ``key: [source, ...]``; a source is label:NAME, annotation:NAME, or text."""
    node.only(*allowed)
    result = {}
    for key in map(str, node.data):
        raw = node.raw(key, [])
        items = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in items):
            raise node.fail(key, f"expected label:NAME, annotation:NAME, text, or a list of them; got {raw!r}")
        try:
            result[key] = tuple(Source.parse(str(i)) for i in items)
        except ValueError as exc:
            raise node.fail(key, str(exc)) from None
    return result


def _matchers(node: Node) -> tuple[Matcher, ...]:
    raw = node.raw("matchers")
    items = raw if isinstance(raw, list) else [raw]
    matchers: list[Matcher] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise node.fail(f"matchers[{i}]", f'expected a string such as severity=~"critical|warning", got {item!r}')
        try:
            matchers += parse_matchers(item)
        except ValueError as exc:
            raise node.fail(f"matchers[{i}]", str(exc)) from None
    if not matchers:
        raise node.fail("matchers", "expected at least one matcher (use `fallback` for everything else)")
    return tuple(matchers)


def _route(node: Node, base: _Settings, matchers: tuple[Matcher, ...], name: str) -> Route:
    merged = _settings(node, base)
    continue_ = node.flag("continue", False) if matchers else False
    for key in ("id", "level"):
        if not merged.target.get(key):
            raise node.fail(f"target.{key}", "is required (in the route or in `defaults.target`)")
    return Route(
        name=name,
        where=f"{node.file}: {node.path or 'top level'}",
        matchers=matchers,
        continue_=continue_,
        target=merged.target,
        fields=merged.fields,
        levels=merged.levels,
        default_level=merged.default_level,
        statuses=merged.statuses,
        mentions=merged.mentions,
    )
