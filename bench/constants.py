"""The names the bench's processes share: the bench group, the department secret and the fakes' credentials.

It imports nothing, so the receivers' and the references' processes can take these without the harness.
"""

from __future__ import annotations

import re

SECRET = "YYLmfY6IRdjZMQ1"  # noqa: S105  (the seed's example department secret)
GROUP_ID, GROUP_LEVEL = "bench", "1"
MAIL_TO = "oncall@example.com"
MARKER_RE = re.compile(r"bench ([0-9a-f]{8})-(\d+)")  # alert_business of the bench alarms: run and index

# Throwaway credentials of the local fakes.
DINGTALK_TOKEN = "benchrobot"  # noqa: S105
DINGTALK_SECRET = "SECbench0123456789abcdef"  # noqa: S105
DINGTALK_PLAIN_TOKEN = "benchplain"  # noqa: S105  (an unsigned robot, keyword or IP security, for Apprise)
WECOM_KEY = "benchkey"
FEISHU_TOKEN = "benchhook"  # noqa: S105
FEISHU_SECRET = "benchfeishu0123456789"  # noqa: S105
FEISHU_PLAIN_TOKEN = "benchplainhook"  # noqa: S105  (unsigned, for Apprise, which does not sign)
