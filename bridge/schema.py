"""Documents read key by key (the config file, stored groups): typed values, ${ENV} references, and errors
that name the file, the key and what is expected. Also the shape of an alert group."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from bridge.model import TARGET_TYPES, Format, Group, Member, Mention, Target

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LONGEST = 366 * 86400.0
REQUIRED: Any = object()  # the default of a key that must be given


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


class Node:
    """A mapping in the config file, read key by key so that every error can say exactly where it is.

    ``${ENV}`` references are read from the environment only in files ops write (``environment``): never in what
    the web, the API or the store hand over, where they would let a user read the server's environment.
    """

    def __init__(self, file: str, path: str, data: object, environment: bool = False) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: {path or 'top level'}: expected a mapping, got {_kind(data)}")
        self.file, self.path, self.data, self.environment = file, path, data, environment

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where(key)}: {expected}")

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(str(key), f"unknown key; expected one of: {', '.join(allowed)}")

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is REQUIRED:
                raise self.fail(key, "is required")
            return default
        return _interpolate(self.data[key], self, key) if self.environment else self.data[key]

    def text(self, key: str, default: Any = REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_kind(value)}")
        return value

    def ident(self, key: str) -> str:
        """A string that YAML may have read as a number (a group's level, say)."""
        value = self.raw(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, str) and value.isdecimal():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def duration(self, key: str, default: float) -> float:
        """Seconds, written as a number or with a unit: 500ms, 2s, 5m, 1h; at most a year (the stores keep
        expiry times in milliseconds, and no window or timeout here is meant to be longer)."""
        value = self.raw(key, default)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match[1]) * _UNITS[match[2]]
        else:
            raise self.fail(key, f"expected a duration such as 30, 500ms, 2s, 5m or 1h, got {value!r}")
        if not seconds <= _LONGEST:  # also refuses inf and nan
            raise self.fail(key, f"expected a duration of at most a year ({_LONGEST:g} s), got {value!r}")
        return seconds

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def texts(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(str(_interpolate(v, self, key)) if self.environment else v for v in value)

    def child(self, key: str) -> Node:
        return Node(self.file, self.where(key), self.raw(key, {}), self.environment)

    def children(self, key: str) -> list[Node]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_kind(value)}")
        return [Node(self.file, f"{self.where(key)}[{i}]", item, self.environment) for i, item in enumerate(value)]


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _interpolate(value: object, node: Node, key: str) -> object:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise node.fail(key, f"environment variable {name} is not set (write ${{{name}:-default}} for one)")
        return default

    return _ENV_REF.sub(substitute, value)


def parse_group(node: Node, source: str) -> Group:
    """A group from its YAML/JSON shape (the same shape ``Group.to_dict`` writes)."""
    node.only("id", "level", "name", "members", "channels", "format", "mention", "dedup_window", "templates")
    members = []
    for m in node.children("members"):
        m.only(*(f.name for f in fields(Member)))
        members.append(Member(**{f.name: m.text(f.name, f.default) for f in fields(Member)}))
    templates = node.child("templates")
    window = node.raw("dedup_window", None)
    return Group(
        id=node.text("id"),
        level=node.ident("level"),
        name=node.text("name", ""),
        members=tuple(members),
        targets=tuple(_parse_target(t) for t in node.children("channels")),
        format=Format(node.choice("format", "text", tuple(Format))),
        mention=Mention(node.choice("mention", "none", tuple(Mention))),
        dedup_window=None if window is None else node.duration("dedup_window", 0),
        templates={str(k): templates.text(str(k)) for k in templates.data},
        source=source,
    )


def load_target(data: object) -> Target:
    """A target as a job's payload carries it (a group's ``channels`` entry); ConfigError if it is not one."""
    return _parse_target(Node("payload", "channel", data))


def _parse_target(node: Node) -> Target:
    kind = node.choice("type", "", tuple(TARGET_TYPES))
    cls = TARGET_TYPES[kind]
    node.only("type", *(f.name for f in fields(cls)))
    values: dict[str, Any] = {}
    for f in fields(cls):
        default = REQUIRED if f.default is MISSING else f.default
        values[f.name] = node.texts(f.name, default) if f.name == "to" else node.text(f.name, default)
    return cls(**values)
