"""Thousands of random and malformed bodies: only documented codes, always HTTP 200 with a JSON reply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.model import OPTIONAL_FIELDS, REQUIRED_FIELDS
from tests.helpers import DOCUMENTED_CODES, make_settings, seed_alarm, signed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(REQUIRED_FIELDS + OPTIONAL_FIELDS) | st.text(max_size=12)
alarm_like = st.dictionaries(field_names, st.text(max_size=40) | json_values, max_size=16)
good_values = st.fixed_dictionaries(
    {k: st.sampled_from([v, "", "x", "高", "低", "prod", "du-op"]) for k, v in seed_alarm().items()}
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("fuzz") / "s.db"
    with TestClient(create_app(make_settings(f"sqlite:///{path}"))) as c:
        yield c


def check(client: TestClient, body: bytes) -> int:
    response = client.post("/alarm_v2", content=body)
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    assert reply["code"] in DOCUMENTED_CODES
    assert set(reply) <= {"code", "msg"}
    assert "Traceback" not in reply.get("msg", "")
    return int(reply["code"])


fuzz = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(st.binary(max_size=300))
def test_random_bytes(client: TestClient, body: bytes) -> None:
    check(client, body)


@fuzz
@given(json_values)
def test_random_json(client: TestClient, value: Any) -> None:
    check(client, json.dumps(value).encode())


@fuzz
@given(alarm_like)
def test_random_alarm_shaped_objects(client: TestClient, fields: dict[str, Any]) -> None:
    check(client, json.dumps(fields).encode())


@fuzz
@given(good_values)
def test_signed_alarms_with_random_values_are_accepted_or_refused_for_a_documented_reason(
    client: TestClient, fields: dict[str, str]
) -> None:
    code = check(client, json.dumps(signed(fields)).encode())
    assert code in {0, 1001, 1010, 2002, 2003, 3001}
