"""The OpenAPI 3.1 document of /api/v1, written by hand; a test holds it to the routes that exist."""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.model import ALERT_LEVELS
from bridge.web.listing import STATES
from bridge.web.openapi_schemas import JSON, SCHEMAS, STRING, ref

WHOLE = {"type": "integer", "minimum": 0}
TIME = {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}


def _ok(description: str, schema: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {JSON: {"schema": schema}}
    return {status: answer}


def _errors(*statuses: str) -> dict[str, Any]:
    text = {
        "400": "a parameter or the body is malformed",
        "401": "no valid API token",
        "403": "the group is provisioned from the config file and read-only",
        "404": "no such group",
        "409": "the group already exists, or was changed meanwhile (read it again), or the delivery is not dead",
        "413": "the body is too large",
        "422": "the group is not valid; `fields` names each wrong field",
        "503": "the store is unavailable",
    }
    return {s: {"description": text[s], "content": {JSON: {"schema": ref("Error")}}} for s in ("401", *statuses, "503")}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


KEY_PARAMETERS = [
    {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}
    for name, description in (("id", "the owner's mail prefix"), ("level", "the group number"))
]
GROUP_BODY = {"required": True, "content": {JSON: {"schema": ref("Group")}}}


def document() -> dict[str, Any]:
    group_list = {"type": "object", "properties": {"groups": {"type": "array", "items": ref("Group")}}}
    test_body = {
        "type": "object",
        "properties": {
            **{k: STRING for k in ("dep", "env", "alert_business")},
            "alert_level": {"enum": list(ALERT_LEVELS)},
        },
        "additionalProperties": STRING,
    }
    test_reply = {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "msg": STRING,
            "deliveries": {"type": "array", "items": ref("Delivery")},
        },
    }
    paths: dict[str, Any] = {
        "/groups": {
            "get": {
                "summary": "List every group (provisioned and stored)",
                "operationId": "listGroups",
                "parameters": [_query("q", "search in id, level, name and member names")],
                "responses": {**_ok("the groups", group_list), **_errors()},
            },
            "post": {
                "summary": "Create a group",
                "operationId": "createGroup",
                "requestBody": GROUP_BODY,
                "responses": {**_ok("created", ref("Group"), "201"), **_errors("400", "409", "413", "422")},
            },
        },
        "/groups/{id}/{level}": {
            "parameters": KEY_PARAMETERS,
            "get": {
                "summary": "One group",
                "operationId": "getGroup",
                "responses": {**_ok("the group", ref("Group")), **_errors("404")},
            },
            "put": {
                "summary": "Create or replace a group",
                "operationId": "putGroup",
                "requestBody": GROUP_BODY,
                "responses": {
                    **_ok("replaced", ref("Group")),
                    **_ok("created", ref("Group"), "201"),
                    **_errors("400", "403", "409", "413", "422"),
                },
            },
            "delete": {
                "summary": "Delete a group",
                "operationId": "deleteGroup",
                "responses": {**_ok("deleted", None, "204"), **_errors("403", "404")},
            },
        },
        "/groups/{id}/{level}/test": {
            "parameters": KEY_PARAMETERS,
            "post": {
                "summary": "Send a test alarm through the real delivery path",
                "operationId": "testGroup",
                "requestBody": {"required": False, "content": {JSON: {"schema": test_body}}},
                "responses": {
                    **_ok("the reply code and each channel's delivery", test_reply),
                    **_errors("400", "404", "413", "422"),
                },
            },
        },
        "/alarms": {
            "get": {
                "summary": "Alarms with each channel's delivery, newest first, a page at a time",
                "operationId": "listAlarms",
                "parameters": [
                    _query("group", "id or id/level"),
                    _query("code", "alarms with a delivery that has this code", WHOLE),
                    _query(
                        "state",
                        "alarms with a delivery in this state (done: delivered; muted: held back by a mute)",
                        {"enum": list(STATES)},
                    ),
                    _query("since", "seconds since the epoch, or ISO 8601", TIME),
                    _query("until", "seconds since the epoch, or ISO 8601", TIME),
                    _query("target", "alarms with a delivery to this target type, e.g. dingtalk-robot"),
                    _query("level", "alert_level: 高, 中 or 低"),
                    _query("business", "a part of alert_business (an Alertmanager alert's alertname)"),
                    _query("host", "a part of alert_host or alert_ip (an Alertmanager alert's instance)"),
                    _query("storm", "the alarms a storm's summaries counted (the id in a summary's link)"),
                    _query("before", "the previous page's next: the page after it"),
                    _query("limit", "at most this many (default 100, at most 1000)", WHOLE),
                ],
                "responses": {
                    **_ok(
                        "the alarms, and where the next page starts (null after the oldest)",
                        {
                            "type": "object",
                            "properties": {
                                "alarms": {"type": "array", "items": ref("Alarm")},
                                "next": {"type": ["string", "null"]},
                                "scanned": {"type": "integer"},
                            },
                        },
                    ),
                    **_errors("400"),
                },
            },
        },
        "/deliveries/{job}/retry": {
            "parameters": [{"name": "job", "in": "path", "required": True, "schema": STRING}],
            "post": {
                "summary": "Put a dead delivery back in the outbox",
                "operationId": "retryDelivery",
                "responses": {**_ok("back in the outbox", {"type": "object"}), **_errors("409")},
            },
        },
        "/preview": {
            "get": {
                "summary": "What a channel would receive for a sample alarm",
                "operationId": "preview",
                "parameters": [
                    _query("group", "ID/LEVEL"),
                    _query("channel", "dingtalk, wecom or email"),
                    _query("sample", "seed, full or low"),
                ],
                "responses": {**_ok("the rendered message", {"type": "object"}), **_errors("400", "404")},
            },
        },
        "/mutes": {
            "get": {
                "summary": "The mutes in force (from action links), soonest to end first",
                "operationId": "listMutes",
                "responses": {
                    **_ok(
                        "the mutes",
                        {"type": "object", "properties": {"mutes": {"type": "array", "items": ref("Mute")}}},
                    ),
                    **_errors(),
                },
            },
        },
        "/mutes/{mute}": {
            "parameters": [{"name": "mute", "in": "path", "required": True, "schema": STRING}],
            "delete": {
                "summary": "Lift a mute now",
                "operationId": "liftMute",
                "responses": {
                    **_ok("the mute lifted", {"type": "object", "properties": {"lifted": ref("Mute")}}),
                    **_errors("404"),
                },
            },
        },
        "/audit": {
            "get": {
                "summary": "The audit log, newest first",
                "operationId": "auditLog",
                "parameters": [
                    _query("limit", "default 100", WHOLE),
                    _query("before", "entries numbered below this", WHOLE),
                ],
                "responses": {
                    **_ok(
                        "the entries",
                        {"type": "object", "properties": {"entries": {"type": "array", "items": ref("AuditEntry")}}},
                    ),
                    **_errors("400"),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {**_ok("the OpenAPI document", {"type": "object"}), **_errors()},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "alarm-bridge configuration API", "version": __version__},
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from web.api_tokens in the config",
                }
            },
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }
