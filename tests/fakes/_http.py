from __future__ import annotations

import json
from typing import Any

import requests

TIMEOUT = 5.0


def _decode(response: requests.Response) -> dict[str, Any]:
    # Both vendors answer errors with HTTP 200 and an errcode in the body.
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def post_json(url: str, body: object, params: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a UTF-8 JSON body (not ASCII-escaped, so byte limits count real UTF-8) and decode the reply."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    return _decode(requests.post(url, params=params, data=data, headers=headers, timeout=TIMEOUT))


def get_json(url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    return _decode(requests.get(url, params=params, timeout=TIMEOUT))
