"""The schemas of the OpenAPI document's components: what /api/v1 takes and answers."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from bridge.model import TARGET_TYPES, Member
from bridge.web.listing import STATES

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


STRING = {"type": "string"}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": STRING,
            "fields": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "field path (e.g. channels[0].webhook) -> what is wrong",
            },
        },
    },
    "Member": {
        "type": "object",
        "required": ["name"],
        "properties": {f.name: STRING for f in fields(Member)},
        "additionalProperties": False,
    },
    "Channel": {
        "type": "object",
        "required": ["type"],
        "description": (
            "A target. `webhook` (robots) and `secret` (dingtalk-robot, feishu-robot) are write-only: replies show "
            "them masked (`...?access_token=****`, `SEC****`). On PUT, a masked or missing value keeps the value "
            "of the channel at the same position with the same type; an empty `secret` removes it."
        ),
        "properties": {
            "type": {"enum": list(TARGET_TYPES)},
            "name": {"type": "string", "description": "what deliveries, logs and metrics call it (optional)"},
            "webhook": STRING,
            "secret": STRING,
            "keyword": {
                "type": "string",
                "description": "dingtalk-robot, feishu-robot: one of its keywords, added where missing",
            },
            "app": {"type": "string", "description": "an app under dingtalk.apps, wecom.apps or feishu.apps"},
            "chat_id": {"type": "string", "description": "feishu-app: the chat it sends to (oc_...)"},
            "to": {"type": "array", "items": STRING, "description": "email: addresses besides the members' mail"},
        },
        "additionalProperties": False,
    },
    "Group": {
        "type": "object",
        "required": ["id", "level"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "level": {"type": "string", "minLength": 1},
            "name": STRING,
            "members": {"type": "array", "items": ref("Member")},
            "channels": {"type": "array", "items": ref("Channel")},
            "format": {"enum": ["text", "markdown"]},
            "mention": {"enum": ["none", "members", "all"]},
            "dedup_window": {"type": ["number", "string"], "description": "seconds, or 30s, 5m, 1h; absent: global"},
            "templates": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "template name (native/text.j2) -> Jinja2 override",
            },
            "source": {"type": "string", "readOnly": True, "description": "where the group comes from"},
            "provisioned": {"type": "boolean", "readOnly": True, "description": "from the config file: read-only"},
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": STRING,
            "target": {"type": "string", "description": "the target's type and app (never its webhook)"},
            "state": {"enum": ["pending", "done", "dead"]},
            "attempts": {"type": "integer"},
            "code": {"type": ["integer", "null"], "description": "0 delivered, 4000..4007 failed, null not tried"},
            "detail": STRING,
            "updated": {"type": "number"},
        },
    },
    "Alarm": {
        "type": "object",
        "properties": {
            "id": STRING,
            "created": {"type": "number", "description": "seconds since the epoch"},
            "group": {"type": "object", "properties": {"id": STRING, "level": STRING, "name": STRING}},
            "state": {
                "enum": list(STATES),
                "description": "dead if any delivery is, then pending; muted when a mute held it back",
            },
            "storm": {
                "type": ["object", "null"],
                "description": "the storm whose summary counted the alarm instead of sending its text",
                "properties": {"id": STRING, "message": {"type": "integer"}},
            },
            "alarm": {"type": "object", "additionalProperties": STRING, "description": "the native fields"},
            "acknowledged": {
                "type": ["object", "null"],
                "description": "who acknowledged it from an action link, and when",
                "properties": {"by": STRING, "at": {"type": "number"}},
            },
            "deliveries": {"type": "array", "items": ref("Delivery")},
        },
    },
    "AuditEntry": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "at": {"type": "number"},
            **{k: STRING for k in ("who", "action", "target", "detail")},
        },
    },
    "Mute": {
        "type": "object",
        "description": "native alarms of the group with this business and host are recorded as muted, not sent",
        "properties": {
            "id": STRING,
            "group": {"type": "object", "properties": {"id": STRING, "level": STRING}},
            "business": {"type": ["string", "null"], "description": "alert_business; null: any (from a digest)"},
            "host": {"type": ["string", "null"], "description": 'alert_host ("": none); null: any (from a digest)'},
            "until": {"type": "number", "description": "seconds since the epoch"},
            "at": {"type": "number"},
            **{k: STRING for k in ("who", "title")},
        },
    },
}
