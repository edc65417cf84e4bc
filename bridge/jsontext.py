"""JSON request bodies as Unicode text.

JSON's escapes can spell a lone UTF-16 surrogate (``"\\ud800"``), which Python decodes but no part of the
gateway can encode again: not the signature, the store, a template or an error message that echoes it. Such a
body is refused where it is read, like any other body that is not JSON.
"""

from __future__ import annotations

import json
from typing import Any


def loads(body: bytes | bytearray) -> Any:
    """``json.loads``; ValueError also when a key or string holds a lone surrogate."""
    data = json.loads(body)
    if (b"\\ud" in body or b"\\uD" in body) and _lone_surrogate(data):  # only an escape can make one
        raise ValueError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair): not Unicode text")
    return data


def _lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False
