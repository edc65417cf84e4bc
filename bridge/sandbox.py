"""The Jinja2 sandboxes messages are rendered in: one for the shipped templates, and a bounded one for the
overrides that ops write on the page, whose runaway render must not hold up every other group's deliveries."""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, nodes, select_autoescape
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment

from bridge.model import Alarm, Group

# A group's channels hold webhook tokens and signing secrets, which are write-only: no template reads them (nor
# the group's JSON, which holds them too); its other fields, and an alarm's, are plain data.
_HIDDEN = frozenset({"targets", "encoded", "to_dict"})
_PLAIN_FIELDS = {kind: frozenset(f.name for f in fields(kind)) - _HIDDEN for kind in (Alarm, Group)}
_LOOP_FIELDS = frozenset({"index", "index0", "first", "last", "length", "revindex", "revindex0"})

# The CPU time rendering one override may take: a hundred times what a plain one does, yet short enough that a
# runaway one does not hold up the others. And the most it may write, or make in one step.
OVERRIDE_SECONDS = 0.1
OVERRIDE_CHARS = 1_000_000
_BITS = 100_000  # the largest integer an override may make (30,000 digits)
_WIDE = re.compile(r"(?:%[-+ #0]*|\{[^{}]*:[^{}]*?)\d{7,}")  # a format's width or precision past OVERRIDE_CHARS
# What makes text as long as a number it is given says: the filters, and the string methods.
_SIZING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "format"})
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"})


class Environment(SandboxedEnvironment):
    def __init__(self, directory: Path) -> None:
        super().__init__(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html.j2"], default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
            auto_reload=False,  # no stat() per message: a config reload makes a new Renderer, which reads them anew
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        """An alarm's or a group's own fields are plain data, read without the sandbox's generic checks (which
        cost more than the rest of a digest line); everything else goes through them."""
        names = _PLAIN_FIELDS.get(type(obj))
        if names is not None and attribute in names:
            return getattr(obj, attribute)
        if type(obj) is LoopContext and attribute in _LOOP_FIELDS:  # a digest's numbering, on every line
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not (isinstance(obj, Group) and attr in _HIDDEN) and super().is_safe_attribute(obj, attr, value)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A plain dict, not Jinja's ChainMap: every render copies a template's globals, and a ChainMap copies slowly
        (the environment's globals are never changed once templates are loaded)."""
        return {**self.globals, **(d or {})}


class Overrun(SecurityError):
    """An override ran past OVERRIDE_SECONDS: it would again, so it is not run again (until it is changed)."""


class Bounded(Environment):
    """The overrides' environment. Its thread's CPU time is checked at every call, filter, operator, loop step and
    piece of output, and compiling counts too (Jinja folds constants then); what an override makes in one step
    is checked before it is made: numbers past OVERRIDE_CHARS in a call, strings and lists repeated past it,
    formats as wide, integers past _BITS. Past any of them the override fails, and the default is used."""

    intercepted_binops = frozenset({"*", "**", "%"})  # also kept from being folded at compile time
    deadline = math.inf  # of this thread's CPU time: another process's load or a paused process does not count

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.filters = {name: self._checked(name, f) for name, f in self.filters.items()}

    def bound(self, work: Callable[[], str]) -> str:
        self.deadline = time.thread_time() + OVERRIDE_SECONDS
        try:
            return work()
        finally:
            self.deadline = math.inf

    def render(self, template: Template, context: dict[str, Any]) -> str:
        out, size = [], 0
        for piece in template.generate(context):
            size += len(piece)
            if size > OVERRIDE_CHARS:
                raise SecurityError(f"more than {OVERRIDE_CHARS} characters of output")
            self.check()
            out.append(piece)
        return "".join(out)

    def check(self) -> None:
        if time.thread_time() > self.deadline:
            raise Overrun(f"took more than {OVERRIDE_SECONDS:g}s of CPU to render")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.check()
        if isinstance(getattr(obj, "__self__", None), str) and getattr(obj, "__name__", "") in _SIZING_METHODS:
            _sizes(obj.__self__, *args, *kwargs.values())
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` are read here, not called through ``call``."""
        if isinstance(getattr(value, "__self__", None), str) and getattr(value, "__name__", "") in _SIZING_METHODS:
            _sizes(value.__self__)
        return super().wrap_str_format(value)

    def _checked(self, name: str, filter: Callable[..., Any]) -> Callable[..., Any]:
        sizing = name in _SIZING_FILTERS

        @functools.wraps(filter)  # keeps the attribute that says which context a filter is passed
        def checked(*args: Any, **kwargs: Any) -> Any:
            self.check()
            if sizing:
                _sizes(*args, *kwargs.values())
            return filter(*args, **kwargs)

        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.check()
        if operator == "%" and isinstance(left, str):
            _sizes(left)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and left.bit_length() * right > _BITS:
                raise SecurityError(f"a number of more than {_BITS} bits")
        elif operator == "*" and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _BITS:
                raise SecurityError(f"a number of more than {_BITS} bits")
        elif operator == "*" and (isinstance(left, int) or isinstance(right, int)):  # a sequence repeated
            times, sequence = (left, right) if isinstance(left, int) else (right, left)
            if _size(sequence) * times > OVERRIDE_CHARS:
                raise SecurityError(f"a repeated sequence of more than {OVERRIDE_CHARS} characters")
        return super().call_binop(context, operator, left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every loop steps through ``stepped``: a loop that makes no call is checked too."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            stepped = nodes.Call(nodes.EnvironmentAttribute("stepped"), [loop.iter], [], None, None)
            loop.iter = stepped.set_lineno(loop.lineno).set_environment(self)
        return tree

    def stepped(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.check()
            yield item


def _sizes(*args: Any) -> None:
    """Refuse what would make text past OVERRIDE_CHARS in one step: a number that large, or a format that wide."""
    for arg in args:
        if isinstance(arg, int) and abs(arg) > OVERRIDE_CHARS:
            raise SecurityError(f"a length above {OVERRIDE_CHARS}")
        if isinstance(arg, str) and _WIDE.search(arg):
            raise SecurityError(f"a format wider than {OVERRIDE_CHARS}")


def _size(sequence: object) -> int:
    """Characters a sequence holds, its strings' included (one level deep)."""
    if isinstance(sequence, str):
        return len(sequence)
    if isinstance(sequence, list | tuple):
        return len(sequence) + sum(len(item) for item in sequence if isinstance(item, str | list | tuple))
    return 0
