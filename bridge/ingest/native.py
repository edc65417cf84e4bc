"""POST /alarm_v2: the seed's native protocol, checked in the documented order."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from bridge import jsontext
from bridge.codes import Code
from bridge.config import NativeSettings
from bridge.model import ALERT_LEVELS, OPTIONAL_FIELDS, REQUIRED_FIELDS, Alarm

logger = logging.getLogger(__name__)

_KNOWN = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
_OK = json.dumps({"code": 0})
_JSON = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Rejection:
    code: Code
    detail: str = ""


def sign(fields: Mapping[str, str], secret: str) -> str:
    """md5 of the values of every key but ``sign``, in ASCII key order, followed by the department's secret."""
    joined = "".join(value for key, value in sorted(fields.items()) if key != "sign")
    return hashlib.md5((joined + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


def parse(body: bytes, settings: NativeSettings) -> Alarm | Rejection:
    try:
        data = jsontext.loads(body)
    except (ValueError, RecursionError) as exc:
        return Rejection(Code.BAD_JSON, f"{type(exc).__name__}: {str(exc)[:120]}")
    if not isinstance(data, dict):
        return Rejection(Code.NOT_OBJECT, f"got a JSON {type(data).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    unknown = sorted(k for k in data if k not in _KNOWN)
    if missing or unknown:
        parts = [f"missing: {', '.join(missing)}"] if missing else []
        parts += [f"unknown: {', '.join(unknown)[:200]}"] if unknown else []
        return Rejection(Code.BAD_PARAMS, "; ".join(parts))
    not_strings = [k for k, v in data.items() if not isinstance(v, str)]
    if not_strings:
        return Rejection(Code.NOT_STRING, f"not strings: {', '.join(sorted(not_strings))}")
    secret = settings.departments.get(data["dep"])
    if secret is None:
        return Rejection(Code.BAD_DEP, f"dep must be one of {', '.join(sorted(settings.departments))}")
    if data["env"] not in settings.environments:
        return Rejection(Code.BAD_ENV, f"env must be one of {', '.join(sorted(settings.environments))}")
    if data["alert_level"] not in ALERT_LEVELS:
        return Rejection(Code.BAD_PARAMS, f"alert_level must be one of {', '.join(ALERT_LEVELS)}")
    if not hmac.compare_digest(sign(data, secret).encode(), data["sign"].encode("utf-8", "replace")):
        return Rejection(Code.BAD_SIGN)
    return Alarm.from_fields(data)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed the limit (it is never read whole then)."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def reply(code: Code, detail: str = "") -> Response:
    """HTTP 200 with ``{"code": N}``; errors add a bilingual ``msg``. Exactly ``{"code": 0}`` on success, as the
    seed's clients expect: what a success adds (delivery still going on, say) is logged instead."""
    if code is Code.OK:
        if detail:
            logger.info("alarm accepted: %s", detail)
        return Response(_OK, media_type=_JSON)
    body = {"code": int(code), "msg": f"{code.meaning}: {detail}" if detail else code.meaning}
    return Response(json.dumps(body, ensure_ascii=False), media_type=_JSON)
