"""The group form: a group as rows of fields, and the posted fields back as the group's JSON shape.

Fields are named ``members-3-mail``, ``channels-1-webhook``, ``template:native/text.j2``; blank rows are skipped.
Secret fields are never filled in: they show the masked value as a placeholder, and an empty one keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge.model import TARGET_TYPES, Group, Member
from bridge.web.groups import Errors
from bridge.web.masks import mask_secret, mask_webhook
from bridge.web.pages import Form

MEMBER_FIELDS = tuple(f.name for f in fields(Member))
CHANNEL_FIELDS = ("type", "name", "webhook", "secret", "keyword", "app", "chat_id", "to")
_TEXT_FIELDS = ("name", "webhook", "secret", "keyword", "app", "chat_id")  # what a row's kind does not have is dropped
BLANK_MEMBERS, BLANK_CHANNELS = 3, 2
_ROW = re.compile(r"^(members|channels)-(\d+)-(\w+)$")
_PATH = re.compile(r"^(members|channels)\[(\d+)\](?:\.(\w+))?$")


@dataclass
class GroupForm:
    values: dict[str, str]  # id, level, name, format, mention, dedup_window
    members: list[dict[str, str]]
    channels: list[dict[str, str]]  # the fields, plus webhook_mask, secret_mask and ref (the position it came from)
    templates: dict[str, str]
    version: str = ""
    errors: Errors = field(default_factory=dict)  # form field name -> message; "" for the form as a whole


def template_names(folders: Sequence[Path]) -> list[str]:
    """The templates a group may override, by name (``native/text.j2``): those of every folder the renderer reads."""
    return sorted({p.relative_to(f).as_posix() for f in folders if f.is_dir() for p in f.rglob("*.j2") if p.is_file()})


def from_group(group: Group | None, version: str = "", blank_rows: bool = True) -> GroupForm:
    members = [{f: getattr(m, f) for f in MEMBER_FIELDS} for m in group.members] if group else []
    channels = []
    for i, target in enumerate(group.targets if group else ()):
        row = {**dict.fromkeys(CHANNEL_FIELDS, ""), "type": target.kind, "ref": str(i)}
        row["webhook_mask"] = mask_webhook(getattr(target, "webhook", ""))
        row["secret_mask"] = mask_secret(getattr(target, "secret", ""))
        row |= {f: getattr(target, f, "") for f in ("name", "keyword", "app", "chat_id")}
        row["to"] = ", ".join(getattr(target, "to", ()))
        channels.append(row)
    values = {"id": "", "level": "", "name": "", "format": "text", "mention": "none", "dedup_window": ""}
    if group:
        window = "" if group.dedup_window is None else f"{group.dedup_window:g}"
        values |= {"id": group.id, "level": group.level, "name": group.name, "dedup_window": window}
        values |= {"format": group.format.value, "mention": group.mention.value}
    form = GroupForm(values, members, channels, dict(group.templates) if group else {}, version)
    return with_blank_rows(form) if blank_rows else form


def with_blank_rows(form: GroupForm) -> GroupForm:
    form.members += [dict.fromkeys(MEMBER_FIELDS, "") for _ in range(BLANK_MEMBERS)]
    blank = {**dict.fromkeys(CHANNEL_FIELDS, ""), "webhook_mask": "", "secret_mask": "", "ref": ""}
    form.channels += [dict(blank) for _ in range(BLANK_CHANNELS)]
    return form


@dataclass(frozen=True)
class Posted:
    data: dict[str, Any]  # the group's JSON shape, for groups.build
    refs: list[int | None]  # per channel: the position whose secrets it keeps
    form: GroupForm  # what to show again if it does not validate: the rows in data order, secrets left empty


def _rows(form: Form, kind: str) -> dict[int, dict[str, str]]:
    rows: dict[int, dict[str, str]] = {}
    for name, values in form.items():
        match = _ROW.match(name)
        if match and match[1] == kind:
            rows.setdefault(int(match[2]), {})[match[3]] = values[0].strip() if match[3] != "secret" else values[0]
    return dict(sorted(rows.items()))


def read(form: Form, names: list[str], current: Group | None) -> Posted:
    def value(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    data: dict[str, Any] = {k: value(k) for k in ("id", "level", "name", "format", "mention")}
    if value("dedup_window"):
        data["dedup_window"] = value("dedup_window")
    members, shown_members = [], []
    for fields_ in _rows(form, "members").values():
        member = {f: fields_.get(f, "") for f in MEMBER_FIELDS}
        if fields_.get("remove") or not any(member.values()):
            continue
        members.append({k: v for k, v in member.items() if v or k == "name"})
        shown_members.append(member)
    channels, refs, shown_channels = [], [], []
    for fields_ in _rows(form, "channels").values():
        kind = fields_.get("type", "")
        if fields_.get("remove") or not kind:
            continue
        ref = int(fields_["ref"]) if fields_.get("ref", "").isdecimal() else None
        channel: dict[str, Any] = {"type": kind}
        for name in _TEXT_FIELDS:
            if name in ("webhook", "secret") and not fields_.get(name):
                continue  # left empty: keep the stored one (a missing key means "keep")
            if fields_.get(name):
                channel[name] = fields_[name]
        if fields_.get("clear_secret"):
            channel["secret"] = ""
        if fields_.get("to"):
            channel["to"] = [a for a in re.split(r"[\s,;]+", fields_["to"]) if a]
        if kind in TARGET_TYPES:
            has = {f.name for f in fields(TARGET_TYPES[kind])}
            channel = {k: v for k, v in channel.items() if k in has or k not in _TEXT_FIELDS}
        channels.append(channel)
        refs.append(ref)
        old = current.targets[ref] if current is not None and ref is not None and ref < len(current.targets) else None
        shown_channels.append(
            {
                **{f: fields_.get(f, "") for f in ("type", "name", "keyword", "app", "chat_id", "to")},
                "webhook": "",
                "secret": "",
                "ref": "" if ref is None else str(ref),
                "webhook_mask": mask_webhook(getattr(old, "webhook", "")) if old and old.kind == kind else "",
                "secret_mask": mask_secret(getattr(old, "secret", "")) if old and old.kind == kind else "",
            }
        )
    data["members"], data["channels"] = members, channels
    data["templates"] = {n: (form.get(f"template:{n}") or [""])[0] for n in names}
    data["templates"] = {n: s.replace("\r\n", "\n") for n, s in data["templates"].items() if s.strip()}
    shown = GroupForm(
        {k: value(k) for k in ("id", "level", "name", "format", "mention", "dedup_window")},
        shown_members,
        shown_channels,
        dict(data["templates"]),
        value("version"),
    )
    return Posted(data, refs, shown)


def form_errors(errors: Errors) -> Errors:
    """Errors by field path -> by the form field that shows them (rows are shown again in data order)."""
    found: Errors = {}
    for path, message in errors.items():
        match = _PATH.match(path)
        if match:
            found[f"{match[1]}-{match[2]}-{match[3] or 'type'}"] = message
        elif path.startswith("templates."):
            found[f"template:{path.removeprefix('templates.')}"] = message
        else:
            found[path] = message
    return found
