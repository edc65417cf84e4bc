"""A client that signs and posts an alarm exactly as the seed's ``send_v2`` does."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping

from bridge.ingest.native import sign


def send(url: str, fields: Mapping[str, str], secret: str, timeout: float = 10.0) -> str:
    """Sign ``fields`` with the department's secret, POST them as JSON and return the reply text."""
    data = dict(fields)
    data["sign"] = sign(data, secret)
    request = urllib.request.Request(  # noqa: S310  (the URL is the caller's gateway, http or https)
        url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return str(response.read().decode("utf-8"))
