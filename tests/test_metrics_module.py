from __future__ import annotations

import platform

from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__, metrics

FAMILIES = {
    "alarm_bridge_alarms_received": "counter",
    "alarm_bridge_deliveries": "counter",
    "alarm_bridge_delivery_duration_seconds": "histogram",
    "alarm_bridge_retries": "counter",
    "alarm_bridge_dead_letters": "counter",
    "alarm_bridge_outbox_depth": "gauge",
    "alarm_bridge_rate_limit_waits": "counter",
    "alarm_bridge_messages_truncated": "counter",
    "alarm_bridge_chat_members_rejected": "counter",
    "alarm_bridge_dedup_hits": "counter",
    "alarm_bridge_storms_started": "counter",
    "alarm_bridge_storms_ended": "counter",
    "alarm_bridge_alarms_summarized": "counter",
    "alarm_bridge_alarms_muted": "counter",
    "alarm_bridge_actions": "counter",
    "alarm_bridge_store_errors": "counter",
    "alarm_bridge_store_failovers": "counter",
    "alarm_bridge_store_replica_acks": "counter",
    "alarm_bridge_token_refreshes": "counter",
    "alarm_bridge_template_errors": "counter",
    "alarm_bridge_config_reloads": "counter",
    "alarm_bridge_config_last_reload_successful": "gauge",
    "alarm_bridge_config_last_reload_success_timestamp_seconds": "gauge",
    "alarm_bridge_build_info": "gauge",  # an Info is a gauge of 1 in the text format
}


def scrape() -> dict[str, float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def test_every_family_is_exposed_with_its_type() -> None:
    body, _ = metrics.exposition()
    found = {f.name: f.type for f in text_string_to_metric_families(body.decode()) if f.name.startswith("alarm_")}
    assert found == FAMILIES


def test_build_info_and_reload_series_exist_before_anything_happens() -> None:
    samples = scrape()
    assert samples[f'alarm_bridge_build_info{{python="{platform.python_version()}",version="{__version__}"}}'] == 1
    assert 'alarm_bridge_config_reloads_total{result="success"}' in samples
    assert 'alarm_bridge_config_reloads_total{result="failure"}' in samples


def test_counters_and_histograms_move() -> None:
    before = scrape()
    metrics.DELIVERIES.labels(channel="dingtalk", target="dingtalk-robot ops", reason="ok").inc()
    metrics.DELIVERY_DURATION.labels(channel="dingtalk").observe(0.03)
    metrics.STORE_ERRORS.inc(2)
    after = scrape()
    key = 'alarm_bridge_deliveries_total{channel="dingtalk",reason="ok",target="dingtalk-robot ops"}'
    assert after[key] - before.get(key, 0) == 1
    bucket = 'alarm_bridge_delivery_duration_seconds_bucket{channel="dingtalk",le="0.05"}'
    assert after[bucket] - before.get(bucket, 0) == 1
    assert after["alarm_bridge_store_errors_total{}"] - before["alarm_bridge_store_errors_total{}"] == 2
