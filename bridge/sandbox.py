"""The Jinja2 sandboxes messages are rendered in: one for the shipped templates, and a bounded one for the
overrides that ops write on the page, whose runaway render must not hold up every other group's deliveries."""

from __future__ import annotations

import functools
import gc
import inspect
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, nodes, select_autoescape
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from bridge.model import Alarm, Group

# A group's channels hold webhook tokens and signing secrets, which are write-only: no template reads them (nor
# the group's JSON, which holds them too); its other fields, and an alarm's, are plain data.
_HIDDEN = frozenset({"targets", "encoded", "to_dict"})
_PLAIN_FIELDS = {kind: frozenset(f.name for f in fields(kind)) - _HIDDEN for kind in (Alarm, Group)}
_LOOP_FIELDS = frozenset({"index", "index0", "first", "last", "length", "revindex", "revindex0"})

# The CPU time rendering one override may take: fifty times what a plain one does, yet short enough that a
# runaway one does not hold up the others. And the most it may write, or make in one step.
OVERRIDE_SECONDS = 0.05
OVERRIDE_CHARS = 1_000_000
_BITS = 100_000  # the largest integer an override may make (30,000 digits)
# The most text given to a filter that runs Python code per word (wordwrap, urlize): about 50 ms of CPU.
_SLOW_TEXT = 50_000
# A width or precision given as an argument ("%*s", "{:{}}"), and every width or precision a format holds.
_STARRED = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\*|\d*\.\*)|\{[^{}]*:[^{}]*?\{")
_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*)(?:\.(\d*))?|\{[^{}]*:[^{}\d]*(\d*)(?:\.(\d*))?")


class Environment(SandboxedEnvironment):
    def __init__(self, directories: Sequence[Path]) -> None:
        super().__init__(
            loader=FileSystemLoader(directories),  # the first that has a template gives it
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
    """An override ran past OVERRIDE_SECONDS: it likely would again, so it is not run again for a while."""


class Bounded(ImmutableSandboxedEnvironment, Environment):
    """The overrides' environment. Its thread's CPU time is checked at every call, filter, operator, loop step and
    piece of output, and compiling counts too (Jinja folds constants then); what an override makes in one step is
    checked before it is made (widths and lengths, repeats, joins and replacements past OVERRIDE_CHARS, formats
    as wide, integers past _BITS), and lists and dicts cannot be changed (a list doubled in a loop). Past any of
    them the override fails, and the default is used."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})  # also kept from being folded at compile time
    _collecting = 0.0  # the thread time when the garbage collection under way began
    deadline = math.inf  # of this thread's CPU time: another process's load or a paused process does not count

    def __init__(self, directories: Sequence[Path]) -> None:
        super().__init__(directories)
        self.filters = {name: self._checked(name, f) for name, f in self.filters.items()}
        del self.globals["lipsum"]  # its cost grows with its argument, and no message needs filler text

    def bound(self, work: Callable[[], str]) -> str:
        self.deadline = time.thread_time() + OVERRIDE_SECONDS
        gc.callbacks.append(self._excuse)
        try:
            return work()
        finally:
            gc.callbacks.remove(self._excuse)
            self.deadline = math.inf

    def _excuse(self, phase: str, info: dict[str, int]) -> None:
        """A garbage collection during a render is the process's work, not the override's: the CPU time it takes
        moves the deadline on (a large heap's collection can take longer than the whole bound)."""
        if phase == "start":
            self._collecting = time.thread_time()
        else:
            self.deadline += time.thread_time() - self._collecting

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
        text = getattr(obj, "__self__", None)
        if isinstance(text, str):  # a string's method
            args = _sized_method(text, getattr(obj, "__name__", ""), args)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` are read here, not called through ``call``."""
        if isinstance(getattr(value, "__self__", None), str) and getattr(value, "__name__", "") in _FORMATS:
            _format(value.__self__)
        return super().wrap_str_format(value)

    def _checked(self, name: str, filter: Callable[..., Any]) -> Callable[..., Any]:
        sized = _SIZED_FILTERS.get(name)
        signature = inspect.signature(filter) if sized else None

        @functools.wraps(filter)  # keeps the attribute that says which context a filter is passed
        def checked(*args: Any, **kwargs: Any) -> Any:
            self.check()
            if sized is None or signature is None:
                return filter(*args, **kwargs)
            given = signature.bind(*args, **kwargs)
            sized(given.arguments)
            return filter(*given.args, **given.kwargs)

        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.check()
        if operator == "%" and isinstance(left, str):
            _format(left)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and left.bit_length() * right > _BITS:
                raise SecurityError(f"a number of more than {_BITS} bits")
        elif operator == "*" and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _BITS:
                raise SecurityError(f"a number of more than {_BITS} bits")
        elif operator == "*" and (isinstance(left, int) or isinstance(right, int)):  # a sequence repeated
            times, sequence = (left, right) if isinstance(left, int) else (right, left)
            if _size(sequence) * times > OVERRIDE_CHARS:
                raise SecurityError(f"a repeated sequence of more than {OVERRIDE_CHARS} characters")
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _added(len(left) + len(right))  # a string or list doubled, step by step
        return super().call_binop(context, operator, left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every loop steps through ``stepped``: a loop that makes no call is checked too; and every ``~`` is
        made by ``concat``, which checks its size first (a string doubled in a namespace)."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            stepped = nodes.Call(nodes.EnvironmentAttribute("stepped"), [loop.iter], [], None, None)
            loop.iter = stepped.set_lineno(loop.lineno).set_environment(self)
        _ConcatChecked(self).visit(tree)  # in place: a template's node is never replaced
        return tree

    def stepped(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.check()
            yield item

    def concat(self, *parts: Any) -> str:
        self.check()
        texts = [str(part) for part in parts]
        _added(sum(map(len, texts)))
        return "".join(texts)


class _ConcatChecked(NodeTransformer):
    def __init__(self, environment: Bounded) -> None:
        self.environment = environment

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        parts = [self.visit(part) for part in node.nodes]
        call = nodes.Call(nodes.EnvironmentAttribute("concat"), parts, [], None, None)
        return call.set_lineno(node.lineno).set_environment(self.environment)


def _added(size: int) -> None:
    if size > OVERRIDE_CHARS:
        raise SecurityError(f"a string or list of more than {OVERRIDE_CHARS} characters")


def _slow(text: object) -> None:
    if isinstance(text, str) and len(text) > _SLOW_TEXT:
        raise SecurityError(f"more than {_SLOW_TEXT} characters for a filter that goes word by word")


def _format(text: str) -> None:
    """A format's widths and precisions added up: one format may hold many, repeated (``'%999999d' * 300``)."""
    wide = sum(int(n) for found in _WIDTHS.findall(text) for n in found if n) > OVERRIDE_CHARS
    if wide or _STARRED.search(text):
        raise SecurityError(f"a format wider than {OVERRIDE_CHARS}, or of a width given as an argument")


def _width(width: object) -> None:
    if isinstance(width, int) and abs(width) > OVERRIDE_CHARS:
        raise SecurityError(f"a width above {OVERRIDE_CHARS}")


def _indented(text: object, width: object) -> None:
    _width(width)
    if isinstance(text, str) and isinstance(width, str) and len(width) * (text.count("\n") + 1) > OVERRIDE_CHARS:
        raise SecurityError(f"an indent of more than {OVERRIDE_CHARS} characters")


def _replaced(text: object, old: object, new: object) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grows = (text.count(old) if old else len(text) + 1) * max(len(new) - len(old), 0)
        if len(text) + grows > OVERRIDE_CHARS:
            raise SecurityError(f"a replacement of more than {OVERRIDE_CHARS} characters")


def _joined(items: Iterable[Any], separator: object) -> list[Any]:
    """The items, as a list (to be joined), if joining them makes no more than OVERRIDE_CHARS."""
    listed = list(items)
    size = sum(len(item) if isinstance(item, str) else 20 for item in listed)
    if size + len(str(separator)) * len(listed) > OVERRIDE_CHARS:
        raise SecurityError(f"a join of more than {OVERRIDE_CHARS} characters")
    return listed


def _summed(start: object) -> None:
    if not isinstance(start, int | float):  # adding lists or strings one by one takes time by the square
        raise SecurityError("a sum that does not start from a number")


def _join_filter(arguments: dict[str, Any]) -> None:
    arguments["value"] = _joined(arguments["value"], arguments.get("d", ""))


# The filters that make text as long as an argument says, or longer than their input: each one's check, given
# its arguments by name (it may replace one, a generator by the list it was checked as).
_SIZED_FILTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": lambda a: _width(a.get("width")),
    "indent": lambda a: _indented(a["s"], a.get("width", 4)),
    "format": lambda a: _format(a["value"]) if isinstance(a["value"], str) else None,
    "replace": lambda a: _replaced(a["s"], a["old"], a["new"]),
    "join": _join_filter,
    "sum": lambda a: _summed(a.get("start", 0)),
    **dict.fromkeys(("wordwrap", "urlize", "title", "striptags"), lambda a: _slow(a["s"] if "s" in a else a["value"])),
}
_FORMATS = frozenset({"format", "format_map"})


def _sized_method(text: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A string method's arguments, checked (and a generator given to ``join`` made a list)."""
    if name in ("center", "ljust", "rjust", "zfill", "expandtabs") and args:
        _width(args[0])
    elif name == "replace" and len(args) >= 2:
        _replaced(text, args[0], args[1])
    elif name == "join" and args:
        return (_joined(args[0], text), *args[1:])
    return args


def _size(sequence: object) -> int:
    """Characters a sequence holds, its strings' included (one level deep)."""
    if isinstance(sequence, str):
        return len(sequence)
    if isinstance(sequence, list | tuple):
        return len(sequence) + sum(len(item) for item in sequence if isinstance(item, str | list | tuple))
    return 0
