"""Secrets as the page, the API and the audit log show them: robot webhooks and sign secrets are write-only, shown
masked so that a reader can tell them apart without learning them."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.model import Target, target_fields

MASK = "****"
SECRET_FIELDS = ("webhook", "secret")


def mask_webhook(url: str) -> str:
    """The URL with every query value (a bare query item whole), the token after a Feishu ``/hook/`` and any
    password hidden: robot tokens and keys travel there. A URL that cannot be read (stored before it was checked)
    is hidden whole."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    query = "&".join(f"{p.partition('=')[0]}={MASK}" if "=" in p else MASK for p in parts.query.split("&") if p)
    netloc = parts.netloc.rpartition("@")[2]
    path = re.sub(r"(/hook/)[^/]+", rf"\g<1>{MASK}", parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def mask_secret(secret: str) -> str:
    """A DingTalk sign secret always starts with SEC: showing that says nothing."""
    if not secret:
        return ""
    return f"SEC{MASK}" if secret.startswith("SEC") else MASK


def masked_target(target: Target) -> dict[str, Any]:
    data: dict[str, Any] = {"type": target.kind, **target_fields(target)}
    if "webhook" in data:
        data["webhook"] = mask_webhook(data["webhook"])
    if "secret" in data:
        data["secret"] = mask_secret(data["secret"])
    if "to" in data:
        data["to"] = list(data["to"])
    return data
