"""Alertmanager's label matchers: ``name="value"``, ``name!~"re"``..., parsed and matched as Alertmanager does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!=|!~|=)\s*(.*?)\s*$", re.DOTALL)
# Alertmanager's escapes in a value: \" \n \\. Any other backslash stays, so regular expressions keep \d or \.
_ESCAPE = re.compile(r'\\([n"\\])')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches as the empty string, as in Alertmanager
        if self.pattern is not None:
            return (self.pattern.fullmatch(actual) is not None) == (self.op == "=~")
        return (actual == self.value) == (self.op == "=")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_matchers(text: str) -> list[Matcher]:
    """Matchers as Alertmanager writes them: ``a="b"``, ``a!~"x|y"``, or several: ``{a="b", c=~"d.*"}``."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    matchers = [_matcher(part) for part in _split(text) if part.strip()]
    if not matchers:
        raise ValueError("no matcher")
    return matchers


def _split(text: str) -> list[str]:
    """Split on commas outside double quotes."""
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
    if quoted:
        raise ValueError(f"unterminated quote in {text!r}")
    return [*parts, current]


def _matcher(text: str) -> Matcher:
    match = _MATCHER.match(text)
    if match is None:
        raise ValueError(f'{text.strip()!r} is not a matcher such as name="value" (ops: = != =~ !~)')
    name, op, value = match[1], match[2], match[3]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if '"' in _ESCAPE.sub("", value):
        raise ValueError(f"{text.strip()!r}: stray quote in the value")
    value = _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], value)
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)  # used with fullmatch: Alertmanager's ^(?:value)$, where . is not a newline
        except re.error as exc:
            raise ValueError(f"{text.strip()!r}: invalid regular expression: {exc}") from None
    return Matcher(name, op, value, pattern)
