"""Alertmanager's webhook payload, version 4: parsed and checked, with what is wrong named by its path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge import jsontext

_STATUSES = ("firing", "resolved")


@dataclass(frozen=True)
class Alert:
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    group_key: str
    truncated: int


class _Invalid(ValueError):
    pass


# -- the payload --


def parse(body: bytes) -> Notification | str:
    """The notification, or what is wrong with the payload (unknown keys are ignored: newer versions add some)."""
    try:
        data = jsontext.loads(body)
    except (ValueError, RecursionError) as exc:
        return f"the body is not JSON: {str(exc)[:120]}"
    if not isinstance(data, dict):
        return f"the body is a JSON {type(data).__name__}, expected an object"
    version = data.get("version")
    if version != "4":
        return f'webhook payload version {version!r} is not supported: alarm-bridge reads version "4"'
    try:
        alerts = data.get("alerts")
        if not isinstance(alerts, list) or not alerts:
            raise _Invalid("alerts: expected a non-empty list")
        truncated = data.get("truncatedAlerts") or 0
        if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
            raise _Invalid("truncatedAlerts: expected a number >= 0")
        return Notification(
            receiver=_text(data, "receiver", ""),
            status=_status(data, "status"),
            alerts=tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)),
            group_labels=_pairs(data, "groupLabels"),
            common_labels=_pairs(data, "commonLabels"),
            common_annotations=_pairs(data, "commonAnnotations"),
            external_url=_text(data, "externalURL", "").rstrip("/"),
            group_key=_text(data, "groupKey", ""),
            truncated=truncated,
        )
    except _Invalid as exc:
        return str(exc)


def _alert(data: object, where: str) -> Alert:
    if not isinstance(data, dict):
        raise _Invalid(f"{where}: expected an object")
    labels = _pairs(data, "labels", where)
    starts_at = _text(data, "startsAt", "", where)
    ends_at = _text(data, "endsAt", "", where)
    for key, value in (("startsAt", starts_at), ("endsAt", ends_at)):
        if value and _parse_time(value) is None:
            raise _Invalid(f"{where}.{key}: {value[:40]!r} is not an RFC 3339 time")
    return Alert(
        status=_status(data, "status", where),
        labels=labels,
        annotations=_pairs(data, "annotations", where),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=_text(data, "generatorURL", "", where),
        # before Alertmanager 0.19 there was none: the label set identifies the alert just as well
        fingerprint=_text(data, "fingerprint", "", where) or json.dumps(sorted(labels.items()), ensure_ascii=False),
    )


def _where(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _text(data: dict[str, Any], key: str, default: str, where: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _Invalid(f"{_where(where, key)}: expected a string, got {type(value).__name__}")
    return value


def _status(data: dict[str, Any], key: str, where: str = "") -> str:
    value = _text(data, key, "", where)
    if value not in _STATUSES:
        raise _Invalid(f"{_where(where, key)}: expected firing or resolved, got {value[:40]!r}")
    return value


def _pairs(data: dict[str, Any], key: str, where: str = "") -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Invalid(f"{_where(where, key)}: expected an object of strings")
    return value


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def time(value: str) -> datetime | None:
    """The time, or None when there is none: firing alerts come with endsAt 0001-01-01T00:00:00Z."""
    parsed = _parse_time(value)
    return parsed if parsed is not None and parsed.year > 1 else None
