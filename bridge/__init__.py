"""alarm-bridge: an alert gateway for DingTalk, WeCom and email."""

from __future__ import annotations

__version__ = "0.1.0"
