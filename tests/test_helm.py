"""The Helm chart: Helm's own linter and renderer (helm-sdkpy), the values schema, and the config it hands the gateway.

helm-sdkpy can lint but not template without a cluster, so the chart is rendered by a real `helm install`
(wait off) against a small fake Kubernetes API server below: it answers discovery and accepts every object,
and the release's manifest comes back from Helm exactly as `helm template` would print it.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

from bridge import config, config_file
from bridge.model import FeishuRobot
from bridge.schema import ConfigError
from tests.helpers import TEMPLATES, require_binary

CHART = Path(__file__).resolve().parent.parent / "helm" / "alarm-bridge"
PRODUCTION = CHART / "examples" / "production.yaml"
SENTINEL = CHART / "examples" / "sentinel.yaml"
DASHBOARD = CHART / "dashboards" / "alarm-bridge.json"
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
WARNING = 2  # Helm's lint severities: 1 info, 2 warning, 3 error; `helm lint --strict` fails on warnings
PRODUCTION_ENV = {
    "REDIS_PASSWORD": "redis-pw",
    "DU_SRV_SECRET": "srv-secret",
    "DU_OP_SECRET": "op-secret",
    "OPS_ROBOT_WEBHOOK": "https://oapi.dingtalk.com/robot/send?access_token=t",
    "OPS_ROBOT_SECRET": "SECabc",
    "OPS_FEISHU_HOOK": "https://open.feishu.cn/open-apis/bot/v2/hook/t",
    "OPS_FEISHU_SECRET": "feishu-s",
}
Objects = dict[tuple[str, str], dict[str, Any]]
Render = Callable[..., Objects]


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values over the chart's: maps merge, anything else replaces, null deletes."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


DEFAULTS = load_yaml(CHART / "values.yaml")
PRODUCTION_VALUES = load_yaml(PRODUCTION)
SENTINEL_VALUES = merged(PRODUCTION_VALUES, load_yaml(SENTINEL))  # used after production.yaml


# --- the values schema (jsonschema only: runs everywhere) -----------------------------------------------------


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def test_schema_is_valid_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("values", [DEFAULTS, merged(DEFAULTS, PRODUCTION_VALUES)], ids=["default", "production"])
def test_values_files_meet_the_schema(values: dict[str, Any]) -> None:
    assert schema_errors(values) == []


def test_schema_describes_every_default_value() -> None:
    """additionalProperties is false on the chart's own maps, so a value added without schema fails above;
    this checks the reverse: every top-level key of the schema has a default in values.yaml."""
    assert set(SCHEMA["properties"]) == set(DEFAULTS)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"replicaCount": "three"}, "replicaCount"),
        ({"replicaCount": 3}, "config/store/url"),  # several replicas on SQLite
        (
            {"replicaCount": 2, "config": {"store": {"url": "redis://r:6379/0"}}, "persistence": {"enabled": True}},
            "persistence/enabled",
        ),
        ({"replicas": 3}, ""),  # a typo for replicaCount
        ({"image": {"pullPolicy": "Sometimes"}}, "image/pullPolicy"),
        ({"service": {"port": 0}}, "service/port"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"config": {"store": {"url": "mysql://db/alarms"}}}, "config/store/url"),
        ({"config": {"dedup_window": "five minutes"}}, "config/dedup_window"),
        ({"config": {"templates": "templates"}}, "config/templates"),
        ({"config": {"feishu": {"apps": {"ops": {"app_id": "cli_1"}}}}}, "config/feishu/apps/ops"),  # no app_secret
        ({"secret": {"env": {"NOT-A-VAR": "x"}}}, "secret/env"),
        ({"templates": {"../etc/passwd": "x"}}, "templates"),
        ({"prometheusRule": {"deliveryFailureRatio": 5}}, "prometheusRule/deliveryFailureRatio"),
    ],
)
def test_schema_rejects_wrong_values(change: dict[str, Any], where: str) -> None:
    errors = schema_errors(merged(DEFAULTS, change))
    assert errors, f"the schema accepted {change}"
    assert any(e.startswith(f"{where}:") for e in errors), errors


def test_several_replicas_on_redis_meet_the_schema() -> None:
    values = merged(DEFAULTS, {"replicaCount": 3, "config": {"store": {"url": "rediss://:${P}@redis:6379/0"}}})
    assert schema_errors(values) == []


# --- the dashboard (no Helm needed) ----------------------------------------------------------------------------

METRIC = re.compile(r"\b(alarm_bridge_[a-z_]+)\b")


def exposed_names() -> set[str]:
    """Every sample name the gateway can expose (counters with _total, histograms with _bucket/_sum/_count)."""
    import bridge.metrics  # noqa: F401  (registers the metrics)

    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("alarm_bridge_"):
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
                "info": ["_info"],
            }.get(family.type, [""])
            names |= {family.name + s for s in suffixes}
    return names


def promql_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_metrics_the_gateway_exposes() -> None:
    unknown = promql_names(dashboard_exprs()) - exposed_names()
    assert unknown == set()


def test_dashboard_covers_every_metric() -> None:
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in promql_names(dashboard_exprs())}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exposed_names()}
    assert families - used == set()


# --- Helm: lint and render -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> ModuleType:
    """helm-sdkpy; without it the Helm tests skip on a laptop and fail under CI=true."""
    try:
        return importlib.import_module("helm_sdkpy")
    except ImportError as exc:
        message = (
            f"helm-sdkpy is not installed ({exc}); on Python 3.11: "
            "pip install --ignore-requires-python --no-deps 'helm-sdkpy>=0.1.32,<0.2'"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def lint(helm: ModuleType, tmp_path: Path, values: dict[str, Any] | None = None) -> list[tuple[int, str]]:
    """Helm's linter over the chart, with `values` coalesced over the defaults (Lint takes no values: they
    go into a copy's values.yaml); the (severity, path) of every message above info."""
    chart = CHART
    if values is not None:
        chart = tmp_path / "alarm-bridge"
        shutil.copytree(CHART, chart)
        (chart / "values.yaml").write_text(yaml.safe_dump(merged(DEFAULTS, values), allow_unicode=True), "utf-8")
    result = asyncio.run(helm.Lint(helm.Configuration()).run(str(chart)))
    assert result["TotalChartsLinted"] == 1
    return [(m["Severity"], m["Path"]) for m in result["Messages"] if m["Severity"] >= WARNING]


def test_lint_is_clean_with_the_default_values(helm: ModuleType, tmp_path: Path) -> None:
    assert lint(helm, tmp_path) == []


def test_lint_is_clean_with_the_production_example(helm: ModuleType, tmp_path: Path) -> None:
    assert lint(helm, tmp_path, PRODUCTION_VALUES) == []


def test_lint_is_clean_with_the_sentinel_example(helm: ModuleType, tmp_path: Path) -> None:
    assert lint(helm, tmp_path, SENTINEL_VALUES) == []


def test_lint_refuses_several_replicas_without_redis(helm: ModuleType, tmp_path: Path) -> None:
    assert (3, "values.yaml") in lint(helm, tmp_path, {"replicaCount": 3})


class FakeKube(BaseHTTPRequestHandler):
    """Just enough of a Kubernetes API for `helm install --wait=false`: discovery, no existing objects,
    every create accepted and echoed (the release Secret comes as protobuf and goes back as it came)."""

    RESOURCES: ClassVar[dict[str, dict[str, str]]] = {
        "v1": {
            "configmaps": "ConfigMap",
            "secrets": "Secret",
            "services": "Service",
            "serviceaccounts": "ServiceAccount",
            "persistentvolumeclaims": "PersistentVolumeClaim",
        },
        "apps/v1": {"deployments": "Deployment"},
        "policy/v1": {"poddisruptionbudgets": "PodDisruptionBudget"},
        "monitoring.coreos.com/v1": {"servicemonitors": "ServiceMonitor", "prometheusrules": "PrometheusRule"},
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": "v1"}]}
                for gv in self.RESOURCES
                if "/" in gv
            ]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv, resources in self.RESOURCES.items():
            base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
            if path == base:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                listed = [{"name": r, "namespaced": True, "kind": k, "verbs": verbs} for r, k in resources.items()]
                return self.reply(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": listed})
            parts = path.removeprefix(base + "/namespaces/").split("/")
            if path.startswith(base + "/namespaces/") and len(parts) == 2:  # a list: nothing there yet
                kind = resources.get(parts[1], "") + "List"
                return self.reply(200, {"kind": kind, "apiVersion": gv, "metadata": {}, "items": []})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", self.headers.get("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_PATCH = do_POST

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def kubeconfig() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKube)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "monitoring"}}],
            "current-context": "fake",
        }
    )
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def render(helm: ModuleType, kubeconfig: str) -> Render:
    def render(values: dict[str, Any], skip_schema_validation: bool = False) -> Objects:
        """The chart's objects by (kind, name), as Helm renders them for release "ab" with these values."""
        action = helm.Install(helm.Configuration(namespace="monitoring", kubeconfig=kubeconfig))
        result = asyncio.run(
            action.run("ab", str(CHART), values=values, wait=False, skip_schema_validation=skip_schema_validation)
        )
        objects = [o for o in yaml.safe_load_all(result["manifest"]) if o]
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    return render


def parse_rendered_config(objects: Objects) -> config.Settings:
    """The rendered config as the gateway in the image reads it: its templates (/app/templates there) are this
    repository's, which the image copies."""
    data = yaml.safe_load(objects[("ConfigMap", "ab-alarm-bridge")]["data"]["config.yaml"])
    assert data["templates"] == "/app/templates"
    return config_file.parse({**data, "templates": str(TEMPLATES)}, "/etc/alarm-bridge/config.yaml")


def container(objects: Objects) -> dict[str, Any]:
    pod = objects[("Deployment", "ab-alarm-bridge")]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    result: dict[str, Any] = pod["containers"][0]
    return result


def test_default_render(render: Render) -> None:
    objects = render({})
    assert set(objects) == {
        ("ServiceAccount", "ab-alarm-bridge"),
        ("ConfigMap", "ab-alarm-bridge"),
        ("Service", "ab-alarm-bridge"),
        ("Deployment", "ab-alarm-bridge"),
        ("PodDisruptionBudget", "ab-alarm-bridge"),
    }
    deployment = objects[("Deployment", "ab-alarm-bridge")]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    c = container(objects)
    assert c["args"] == ["--config", "/etc/alarm-bridge/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and "emptyDir" in volumes["tmp"]
    assert mounts["/var/lib/alarm-bridge"] == "data" and "emptyDir" in volumes["data"]
    assert mounts["/etc/alarm-bridge"] == "config"
    assert "envFrom" not in c  # no credentials configured, no Secret
    service = objects[("Service", "ab-alarm-bridge")]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]

    settings = parse_rendered_config(objects)
    assert settings.store.url == "sqlite:////var/lib/alarm-bridge/alarm-bridge.db"  # the writable data volume


def test_production_render(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(PRODUCTION_VALUES)
    kinds = {kind for kind, _ in objects}
    assert {"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} <= kinds
    assert ("Secret", "ab-alarm-bridge-env") not in objects  # credentials come from the existing Secret
    assert objects[("Deployment", "ab-alarm-bridge")]["spec"]["replicas"] == 3
    c = container(objects)
    assert c["envFrom"] == [{"secretRef": {"name": "alarm-bridge-credentials"}}]
    assert c["args"][-2:] == ["--log-format", "json"]
    spread = objects[("Deployment", "ab-alarm-bridge")]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "ab"

    dashboard = objects[("ConfigMap", "ab-alarm-bridge-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["alarm-bridge.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))

    monitor = objects[("ServiceMonitor", "ab-alarm-bridge")]["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["selector"]["matchLabels"] == objects[("Service", "ab-alarm-bridge")]["spec"]["selector"]

    # the config references its secrets as ${VAR}: without them the gateway refuses it, with them it accepts it
    for name in PRODUCTION_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"environment variable [A-Z_]+ is not set"):
        parse_rendered_config(objects)
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    settings = parse_rendered_config(objects)
    assert settings.store.url == "redis://:redis-pw@redis-master.monitoring.svc:6379/0"
    assert settings.native.departments == {"du-srv": "srv-secret", "du-op": "op-secret"}
    (group,) = settings.groups
    assert group.targets[0].kind == "dingtalk-robot"
    assert getattr(group.targets[0], "secret", None) == "SECabc"
    assert group.targets[1] == FeishuRobot(webhook=PRODUCTION_ENV["OPS_FEISHU_HOOK"], secret="feishu-s", keyword="告警")


def test_the_sentinel_example_renders_a_store_that_waits_for_a_replica(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(SENTINEL_VALUES)
    assert objects[("Deployment", "ab-alarm-bridge")]["spec"]["replicas"] == 3
    for name, value in {**PRODUCTION_ENV, "REDIS_SENTINEL_PASSWORD": "sentinel-pw"}.items():
        monkeypatch.setenv(name, value)
    store = parse_rendered_config(objects).store
    assert store.url.startswith("redis+sentinel://:redis-pw@redis-node-0.redis-headless.monitoring.svc:26379,")
    assert store.url.endswith("/mymaster/0")
    assert (store.sentinel_password, store.min_replicas) == ("sentinel-pw", 1)


def test_prometheus_rules_alert_on_the_gateway_itself(render: Render) -> None:
    rule = render(PRODUCTION_VALUES)[("PrometheusRule", "ab-alarm-bridge")]
    rules = rule["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r for r in rules}
    assert {
        "AlarmBridgeDown",
        "AlarmBridgeDeliveriesFailing",
        "AlarmBridgeDeadLetters",
        "AlarmBridgeOutboxGrowing",
        "AlarmBridgeStoreErrors",
        "AlarmBridgeNotReady",
        "AlarmBridgeConfigReloadFailed",
    } <= set(alerts)
    assert 'reason!="ok"' in alerts["AlarmBridgeDeliveriesFailing"]["expr"]
    assert promql_names([r["expr"] for r in rules]) <= exposed_names()
    for r in rules:
        assert 'job="ab-alarm-bridge",namespace="monitoring"' in r["expr"] or "kube_pod_status_ready" in r["expr"]
        assert r["labels"]["team"] == "ops"  # additionalAlertLabels
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert (
            "{{ $labels" in r["annotations"]["description"]
            or "monitoring/ab-alarm-bridge" in r["annotations"]["description"]
        )


@pytest.mark.parametrize("skip_schema_validation", [False, True], ids=["schema", "template"])
def test_several_replicas_without_redis_do_not_render(render: Render, skip_schema_validation: bool) -> None:
    """Refused twice over: by values.schema.json and, with the schema skipped, by the template's own `fail`."""
    with pytest.raises(Exception, match="redis") as caught:
        render({"replicaCount": 3}, skip_schema_validation=skip_schema_validation)
    assert type(caught.value).__name__ == "InstallError"


def test_persistence_with_several_replicas_does_not_render(render: Render) -> None:
    values = {"replicaCount": 2, "config": {"store": {"url": "redis://r:6379/0"}}, "persistence": {"enabled": True}}
    with pytest.raises(Exception, match="persistence"):
        render(values, skip_schema_validation=True)


def test_several_replicas_on_redis_render(render: Render) -> None:
    objects = render({"replicaCount": 3, "config": {"store": {"url": "redis://redis:6379/0"}}})
    assert objects[("Deployment", "ab-alarm-bridge")]["spec"]["replicas"] == 3
    assert parse_rendered_config(objects).store.url == "redis://redis:6379/0"


def test_credentials_rules_and_templates_from_values(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    values: dict[str, Any] = {
        "config": {"native": {"departments": {"du-srv": {"secret": "${DU_SRV_SECRET}"}}}},
        "secret": {"env": {"DU_SRV_SECRET": "s3cret"}, "existingSecret": "more-credentials"},
        "rules": {"default.yaml": "- match: ['severity=\"critical\"']\n  target: {id: ops, level: '1'}\n"},
        "templates": {"native/text.j2": "{{ alarm.alert_business }}\n"},
    }
    objects = render(values)
    secret = objects[("Secret", "ab-alarm-bridge-env")]
    assert secret["stringData"] == {"DU_SRV_SECRET": "s3cret"}
    c = container(objects)
    assert c["envFrom"] == [
        {"secretRef": {"name": "ab-alarm-bridge-env"}},
        {"secretRef": {"name": "more-credentials"}},
    ]
    cm = objects[("ConfigMap", "ab-alarm-bridge")]["data"]
    assert "s3cret" not in cm["config.yaml"]  # the secret reaches the pod as an env var, never in the ConfigMap
    assert cm["rules.default.yaml"] == values["rules"]["default.yaml"]
    assert cm["templates.native__text.j2"] == values["templates"]["native/text.j2"]

    pod = objects[("Deployment", "ab-alarm-bridge")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"key": "rules.default.yaml", "path": "rules/default.yaml"} in volumes["config"]["configMap"]["items"]
    assert volumes["templates"]["configMap"]["items"] == [
        {"key": "templates.native__text.j2", "path": "native/text.j2"}
    ]
    overlay = [m for m in c["volumeMounts"] if m["name"] == "templates"]
    assert overlay == [
        {
            "name": "templates",
            "mountPath": "/app/templates/native/text.j2",
            "subPath": "native/text.j2",
            "readOnly": True,
        }
    ]

    monkeypatch.setenv("DU_SRV_SECRET", "s3cret")
    assert parse_rendered_config(objects).native.departments == {"du-srv": "s3cret"}


def test_config_and_secret_changes_roll_the_pods(render: Render) -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = render(values)[("Deployment", "ab-alarm-bridge")]
        result: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return result

    base = annotations({"secret": {"env": {"A": "1"}}})
    assert annotations({"secret": {"env": {"A": "1"}}}) == base  # stable for the same values
    changed_config = annotations({"secret": {"env": {"A": "1"}}, "config": {"dedup_window": "10m"}})
    assert changed_config["checksum/config"] != base["checksum/config"]
    assert changed_config["checksum/secret"] == base["checksum/secret"]
    changed_secret = annotations({"secret": {"env": {"A": "2"}}})
    assert changed_secret["checksum/secret"] != base["checksum/secret"]
    assert changed_secret["checksum/config"] == base["checksum/config"]


def test_persistence_keeps_the_sqlite_file(render: Render) -> None:
    objects = render({"persistence": {"enabled": True, "size": "2Gi"}})
    claim = objects[("PersistentVolumeClaim", "ab-alarm-bridge-data")]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    deployment = objects[("Deployment", "ab-alarm-bridge")]["spec"]
    assert deployment["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "ab-alarm-bridge-data"}}


def promtool_scenario(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """promtool unit tests: a gateway in trouble fires each alert with these labels and texts, a healthy one none."""
    at = 'job="ab-alarm-bridge",namespace="monitoring"'
    pod = 'instance="10.0.0.7:8080",pod="ab-alarm-bridge-5d9f7c6b8-x2k4p"'
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rules}

    def firing(alert: str, labels: dict[str, str], description: str) -> dict[str, Any]:
        base = {"severity": "warning", "team": "ops", "namespace": "monitoring", "job": "ab-alarm-bridge"}
        return {
            "exp_labels": base | labels,
            "exp_annotations": {"summary": summaries[alert], "description": description},
        }

    def series(**values: str) -> list[dict[str, str]]:
        return [{"series": s, "values": v} for s, v in values.items()]

    trouble = {
        f'alarm_bridge_deliveries_total{{{at},channel="dingtalk",reason="ok"}}': "0+10x40",
        f'alarm_bridge_deliveries_total{{{at},channel="dingtalk",reason="network"}}': "0+5x40",
        f'alarm_bridge_deliveries_total{{{at},channel="email",reason="ok"}}': "0+10x40",
        f'alarm_bridge_dead_letters_total{{{at},channel="wecom"}}': "0x9 1+0x30",
        f'alarm_bridge_storms_started_total{{{at},channel="dingtalk",target="dingtalk-robot:3f2a"}}': "0x9 1+0x30",
        f"alarm_bridge_outbox_depth{{{at},{pod}}}": "0+10x40",
        f"alarm_bridge_store_errors_total{{{at},{pod}}}": "0+1x40",
        f"alarm_bridge_template_errors_total{{{at},{pod}}}": "0+1x40",
        f"alarm_bridge_config_last_reload_successful{{{at},{pod}}}": "1x10 0x30",
        f"up{{{at},{pod}}}": "0x40",
        'kube_pod_status_ready{condition="false",namespace="monitoring",pod="ab-alarm-bridge-5d9f7c6b8-x2k4p"}': "1x40",
    }
    where = "monitoring/ab-alarm-bridge"
    expected = {
        "AlarmBridgeDeliveriesFailing": [
            firing(
                "AlarmBridgeDeliveriesFailing",
                {"channel": "dingtalk"},
                f"{where}: 33.33% of deliveries to dingtalk failed over the last 10 minutes "
                "(see alarm_bridge_deliveries_total by reason).",
            )
        ],
        "AlarmBridgeDeadLetters": [
            firing(
                "AlarmBridgeDeadLetters",
                {"channel": "wecom"},
                f"{where}: deliveries to wecom were dropped after every retry failed in the last 15 minutes.",
            )
        ],
        "AlarmBridgeStorm": [
            firing(
                "AlarmBridgeStorm",
                {"severity": "info", "target": "dingtalk-robot:3f2a"},
                f"{where}: dingtalk-robot:3f2a got more alarms than its rate limit carries, and its group gets "
                "summaries instead of each alarm; something upstream raises alarms faster than a chat can carry them.",
            )
        ],
        "AlarmBridgeOutboxGrowing": [
            firing(
                "AlarmBridgeOutboxGrowing",
                {},
                f"{where}: 300 deliveries are waiting and the number has grown for 15 minutes; "
                "a channel is slow, rate-limited or down.",
            )
        ],
        "AlarmBridgeStoreErrors": [
            firing(
                "AlarmBridgeStoreErrors",
                {"severity": "critical"},
                f"{where}: store calls have been failing for 5 minutes; alarms are answered 3000 and not delivered.",
            )
        ],
        "AlarmBridgeTemplateErrors": [
            firing(
                "AlarmBridgeTemplateErrors",
                {"severity": "info"},
                f"{where}: message templates failed to render in the last 15 minutes; "
                "the default template was used instead.",
            )
        ],
        "AlarmBridgeConfigReloadFailed": [
            firing(
                "AlarmBridgeConfigReloadFailed",
                {"instance": "10.0.0.7:8080"},
                "10.0.0.7:8080: the last config reload failed; the gateway still runs the previous config. "
                "Its log says why.",
            )
        ],
        "AlarmBridgeDown": [
            {
                "exp_labels": {"severity": "critical", "team": "ops"},
                "exp_annotations": {
                    "summary": summaries["AlarmBridgeDown"],
                    "description": f"No alarm-bridge pod of {where} has answered a scrape for 5 minutes; "
                    "alarms are not being delivered.",
                },
            }
        ],
        "AlarmBridgeNotReady": [
            {
                "exp_labels": {
                    "severity": "critical",
                    "team": "ops",
                    "namespace": "monitoring",
                    "pod": "ab-alarm-bridge-5d9f7c6b8-x2k4p",
                },
                "exp_annotations": {
                    "summary": summaries["AlarmBridgeNotReady"],
                    "description": "Pod monitoring/ab-alarm-bridge-5d9f7c6b8-x2k4p has failed its readiness probe "
                    "(/-/ready: store reachable, config loaded) for 5 minutes.",
                },
            }
        ],
    }
    healthy = {
        f'alarm_bridge_deliveries_total{{{at},channel="dingtalk",reason="ok"}}': "0+10x40",
        f'alarm_bridge_dead_letters_total{{{at},channel="wecom"}}': "0x40",
        f'alarm_bridge_storms_started_total{{{at},channel="dingtalk",target="dingtalk-robot:3f2a"}}': "0x40",
        f"alarm_bridge_outbox_depth{{{at},{pod}}}": "5x40",
        f"alarm_bridge_store_errors_total{{{at},{pod}}}": "3x40",
        f"alarm_bridge_template_errors_total{{{at},{pod}}}": "0x40",
        f"alarm_bridge_config_last_reload_successful{{{at},{pod}}}": "1x40",
        f"up{{{at},{pod}}}": "1x40",
        'kube_pod_status_ready{condition="false",namespace="monitoring",pod="ab-alarm-bridge-5d9f7c6b8-x2k4p"}': "0x40",
    }
    assert set(expected) == set(summaries), "every alert of the chart has an expectation here"
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "a gateway in trouble",
                "interval": "1m",
                "input_series": series(**trouble),
                "alert_rule_test": [
                    {
                        "eval_time": "20m" if alert in ("AlarmBridgeDeadLetters", "AlarmBridgeStorm") else "30m",
                        "alertname": alert,
                        "exp_alerts": exp,
                    }
                    for alert, exp in expected.items()
                ],
            },
            {
                "name": "a healthy gateway",
                "interval": "1m",
                "input_series": series(**healthy),
                "alert_rule_test": [{"eval_time": "30m", "alertname": a, "exp_alerts": []} for a in expected],
            },
        ],
    }


def test_prometheus_rules_fire_as_intended(render: Render, tmp_path: Path) -> None:
    """The rendered rules through Prometheus's own promtool: valid PromQL, and each alert fires when it should."""
    promtool = require_binary("promtool")
    rule = render(PRODUCTION_VALUES)[("PrometheusRule", "ab-alarm-bridge")]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    scenario = promtool_scenario(rule["spec"]["groups"][0]["rules"])
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(scenario, width=1000), encoding="utf-8")
    for command in (["check", "rules", "rules.yaml"], ["test", "rules", "tests.yaml"]):
        done = subprocess.run([promtool, *command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
