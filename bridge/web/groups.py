"""Groups as the page and the API see them: secrets masked, input validated field by field, changes described.

Input is the YAML/JSON shape of ``Group.to_dict``, read by ``schema.parse_group`` so that the page, the API and
the config file accept exactly the same groups. Robot webhooks and sign secrets are write-only: a masked or
missing value keeps what the group had at the same position with the same type.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from bridge.config import Settings
from bridge.gateway import Gateway, find_group
from bridge.model import TARGET_TYPES, Group, Member, Target
from bridge.schema import ConfigError, Node, parse_group
from bridge.web import audit
from bridge.web.masks import MASK, SECRET_FIELDS, masked_target

KEY_PATTERN = re.compile(r"^(?!\.\.?$)[^/\s]+$")  # id and level are path segments of the page and the API
_ERROR = re.compile(r"^group: (?P<path>.+?): (?P<message>.+)$", re.DOTALL)

Errors = dict[str, str]  # field path (e.g. "channels[0].webhook") -> what is wrong and what is expected


def _webhook_error(url: str) -> str | None:
    """Why the URL is not a robot webhook: http(s), a host, nothing a request could not carry."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"expected the robot's http(s) URL ({exc})"
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() or ord(c) < 32 for c in url):
        return "expected the robot's http(s) URL"
    return None


def masked(group: Group, provisioned: bool) -> dict[str, Any]:
    """The group as the page and the API show it: secrets masked, and where it comes from."""
    data = group.to_dict()
    data["channels"] = [masked_target(t) for t in group.targets]
    return {**data, "source": group.source, "provisioned": provisioned}


def version(group: Group) -> str:
    """Which state of the group a form was made from, its secrets included (a new webhook is a change too); a
    digest, which shows nothing of them."""
    return hashlib.sha256(json.dumps(group.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


def _config_error(exc: ConfigError, index: tuple[str, int] | None = None) -> tuple[str, str]:
    match = _ERROR.match(str(exc))
    path, message = (match["path"], match["message"]) if match else ("", str(exc))
    if index is not None:  # a row was checked alone, as row 0
        path = path.replace(f"{index[0]}[0]", f"{index[0]}[{index[1]}]", 1)
    return path, message


def _parse(data: Mapping[str, Any]) -> Group:
    return parse_group(Node("group", "", data), source="store")


def _keep_secrets(row: dict[str, Any], old: Target | None) -> dict[str, Any]:
    """A masked or missing webhook or secret takes the value of ``old`` (same type only)."""
    kind = row.get("type")
    cls = TARGET_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return row
    row = dict(row)
    for name in SECRET_FIELDS:
        if name not in {f.name for f in fields(cls)}:
            continue
        value = row.get(name)
        kept = getattr(old, name, None) if old is not None and old.kind == kind else None
        if (value is None or (isinstance(value, str) and MASK in value)) and kept:
            row[name] = kept
    return row


def build(
    data: object,
    current: Group | None,
    settings: Settings,
    refs: Sequence[int | None] | None = None,
    template_names: Sequence[str] = (),
) -> Group | Errors:
    """A group from input, or every error found, each under the path of its field.

    ``refs[i]`` is the position in ``current`` whose secrets channel ``i`` keeps (default: the same position).
    """
    if not isinstance(data, dict):
        return {"": "expected a JSON object with the group's fields"}
    data = dict(data)
    errors: Errors = {}
    for key in ("id", "level"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = data[key] = str(value)
        if value == "":
            errors[key] = "is required"
        elif isinstance(value, str) and not KEY_PATTERN.match(value):
            errors[key] = "must not contain a slash or spaces, nor be . or .."
    members = data.get("members", [])
    for i, member in enumerate(members if isinstance(members, list) else []):
        if isinstance(member, dict):
            errors |= _member_errors(i, member)
    channels = data.get("channels", [])
    if isinstance(channels, list) and current is not None:
        refs = list(range(len(channels))) if refs is None else refs
        olds = [current.targets[r] if r is not None and r < len(current.targets) else None for r in refs]
        data = {
            **data,
            "channels": [
                _keep_secrets(c, o) if isinstance(c, dict) else c for c, o in zip(channels, olds, strict=True)
            ],
        }
    elif isinstance(channels, list):
        data = {**data, "channels": [_keep_secrets(c, None) if isinstance(c, dict) else c for c in channels]}
    for i, channel in enumerate(data["channels"] if isinstance(data.get("channels"), list) else []):
        masked_left = [n for n in SECRET_FIELDS if isinstance(channel, dict) and MASK in str(channel.get(n, ""))]
        for name in masked_left:
            errors[f"channels[{i}].{name}"] = "is masked, and there is none to keep here: enter the whole value"
        if not masked_left:
            errors |= _channel_errors(i, channel, settings)
    templates = data.get("templates", {})
    for name, source in templates.items() if isinstance(templates, dict) else []:
        if template_names and name not in template_names:
            errors[f"templates.{name}"] = f"no template {name!r}; expected one of: {', '.join(template_names)}"
        elif isinstance(source, str) and (problem := template_error(source)):
            errors[f"templates.{name}"] = problem
    try:
        group = _parse(data)
    except ConfigError as exc:
        path, message = _config_error(exc)
        errors.setdefault(path, message)
        return errors
    return errors or group


def _member_errors(i: int, member: dict[str, Any]) -> Errors:
    errors: Errors = {}
    if not str(member.get("name") or "").strip():
        errors[f"members[{i}].name"] = "is required"
    mail = member.get("mail")
    if isinstance(mail, str) and mail and not re.match(r"^[^@\s]+@[^@\s]+$", mail):
        errors[f"members[{i}].mail"] = f"expected a mail address, got {mail!r}"
    mobile = member.get("mobile")
    if isinstance(mobile, str) and mobile and not re.match(r"^\+?[0-9][0-9 -]{4,}$", mobile):
        errors[f"members[{i}].mobile"] = f"expected a phone number, got {mobile!r}"
    if not errors:
        try:
            _parse({"id": "x", "level": "x", "members": [member]})
        except ConfigError as exc:
            path, message = _config_error(exc, ("members", i))
            errors[path] = message
    return errors


def _channel_errors(i: int, channel: object, settings: Settings) -> Errors:
    try:
        target = _parse({"id": "x", "level": "x", "channels": [channel]}).targets[0]
    except ConfigError as exc:
        path, message = _config_error(exc, ("channels", i))
        return {path: message}
    where = f"channels[{i}]"
    webhook = getattr(target, "webhook", None)
    if webhook is not None and (error := _webhook_error(webhook)):
        return {f"{where}.webhook": error}
    app = getattr(target, "app", None)
    vendor, apps = settings.apps.get(target.kind, ("", {}))
    if app is not None and app not in apps:
        known = ", ".join(sorted(apps)) or "none"
        return {f"{where}.app": f"no app {app!r} under {vendor}.apps in the config (configured: {known})"}
    bad = [a for a in getattr(target, "to", ()) if not re.match(r"^[^@\s]+@[^@\s]+$", a)]
    if bad:
        return {f"{where}.to": f"expected mail addresses, got {', '.join(map(repr, bad))}"}
    return {}


def template_error(source: str) -> str:
    """Why a template override does not compile, or ''."""
    try:
        SandboxedEnvironment().parse(source)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return ""


def describe(old: Group | None, new: Group | None) -> str:
    """What changed, for the audit log: names and kinds, never a secret's value."""
    if new is None:
        return "deleted" if old is None else f"deleted {old.name!r}"
    if old is None:
        kinds = ", ".join(t.kind for t in new.targets) or "none"
        return f"created {new.name!r}: {len(new.members)} members, channels: {kinds}"
    changes = [
        f"{key}: {_shown(getattr(old, key))} -> {_shown(getattr(new, key))}"
        for key in ("name", "format", "mention", "dedup_window")
        if getattr(old, key) != getattr(new, key)
    ]
    changes += _members_change(old.members, new.members)
    if [masked_target(t) for t in old.targets] != [masked_target(t) for t in new.targets]:
        changes.append(f"channels: {_kinds(old)} -> {_kinds(new)}")
    elif old.targets != new.targets:
        changed = [
            f"{t.kind} (position {i + 1})"
            for i, (t, o) in enumerate(zip(new.targets, old.targets, strict=True))
            if t != o
        ]
        changes.append(f"new webhook or secret for {', '.join(changed)}")
    names = sorted(set(old.templates) | set(new.templates))
    touched = [n for n in names if old.templates.get(n) != new.templates.get(n)]
    if touched:
        changes.append(f"templates: {', '.join(touched)}")
    return "; ".join(changes) or "no change"


def _shown(value: object) -> str:
    return repr(value.value if isinstance(value, Enum) else value)


def _kinds(group: Group) -> str:
    return "[" + ", ".join(t.kind for t in group.targets) + "]"


def _members_change(old: Sequence[Member], new: Sequence[Member]) -> list[str]:
    before, after = {m.name: m for m in old}, {m.name: m for m in new}
    changes = []
    if added := [n for n in after if n not in before]:
        changes.append(f"members added: {', '.join(added)}")
    if removed := [n for n in before if n not in after]:
        changes.append(f"members removed: {', '.join(removed)}")
    if edited := [n for n in after if n in before and after[n] != before[n]]:
        changes.append(f"members changed: {', '.join(edited)}")
    return changes


async def find(gateway: Gateway, id: str, level: str) -> tuple[Group, bool] | None:
    """The group and whether it is provisioned from the config file (and so read-only here)."""
    group = await find_group(gateway.settings, gateway.store, id, level)
    return None if group is None else (group, group.source != "store")


async def everything(gateway: Gateway) -> list[tuple[Group, bool]]:
    """Every group /alarm_v2 can reach: the provisioned ones, then the stored ones they do not shadow."""
    provisioned = gateway.settings.provisioned
    stored = [g for g in await gateway.store.list_groups() if g.key not in provisioned]
    return [(g, True) for g in provisioned.values()] + [(g, False) for g in stored]


async def save(gateway: Gateway, who: str, new: Group, old: Group | None) -> bool:
    """Store the group if the stored one is still ``old`` (None: there is none); False if someone got there first."""
    if not await gateway.store.put_group(new, old):
        return False
    action = "group.create" if old is None else "group.update"
    await audit.record(gateway.store, who, action, f"{new.id}/{new.level}", describe(old, new))
    return True


async def remove(gateway: Gateway, who: str, group: Group) -> bool:
    deleted = await gateway.store.delete_group(group.id, group.level)
    if deleted:
        await audit.record(gateway.store, who, "group.delete", f"{group.id}/{group.level}", describe(group, None))
    return deleted
