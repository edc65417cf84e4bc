"""The gateway's Prometheus metrics, defined once on the default registry and moved where things happen."""

from __future__ import annotations

import platform

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from bridge import __version__

# no *_created series: the text format turns them into extra gauges that nobody queries
disable_created_metrics()  # type: ignore[no-untyped-call]

ALARMS_RECEIVED = Counter(
    "alarm_bridge_alarms_received_total",
    "Alarms received, by source (native | alertmanager) and the reply code they got.",
    ["source", "code"],
)
DELIVERIES = Counter(
    "alarm_bridge_deliveries_total",
    "Deliveries to one channel target, by the target (see model.label) and outcome reason (ok on success).",
    ["channel", "target", "reason"],
)
DELIVERY_DURATION = Histogram(
    "alarm_bridge_delivery_duration_seconds",
    "Time to deliver to one channel target, retries included.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0),
)
RETRIES = Counter("alarm_bridge_retries_total", "Delivery attempts repeated after a retryable failure.", ["channel"])
DEAD_LETTERS = Counter(
    "alarm_bridge_dead_letters_total", "Deliveries given up on after every retry failed.", ["channel", "target"]
)
OUTBOX_DEPTH = Gauge("alarm_bridge_outbox_depth", "Deliveries waiting to be sent or retried.")
RATE_LIMIT_WAITS = Counter(
    "alarm_bridge_rate_limit_waits_total", "Sends delayed to stay within an upstream rate limit.", ["channel"]
)
MESSAGES_TRUNCATED = Counter(
    "alarm_bridge_messages_truncated_total",
    "Messages delivered cut short to one part because delivery.split is off.",
    ["channel"],
)
CHAT_MEMBERS_REJECTED = Counter(
    "alarm_bridge_chat_members_rejected_total",
    "Group members left out of an app chat because the upstream refused their user id (gone, unknown).",
    ["channel"],
)
DEDUP_HITS = Counter(
    "alarm_bridge_dedup_hits_total", "Alarms dropped as duplicates within the dedup window.", ["source"]
)
STORMS_STARTED = Counter(
    "alarm_bridge_storms_started_total",
    "Targets that entered summary mode (their backlog beyond the horizon).",
    ["channel", "target"],
)
STORMS_ENDED = Counter(
    "alarm_bridge_storms_ended_total",
    "Targets that left summary mode (nothing new for the quiet time).",
    ["channel", "target"],
)
ALARMS_SUMMARIZED = Counter(
    "alarm_bridge_alarms_summarized_total",
    "Alarms accounted for in a storm summary instead of their own message.",
    ["channel", "target"],
)
ALARMS_MUTED = Counter("alarm_bridge_alarms_muted_total", "Native alarms held back by a mute from an action link.")
ACTIONS = Counter(
    "alarm_bridge_actions_total",
    "Action links followed and confirmed, by action (silence | mute | ack | expire) and result.",
    ["action", "result"],
)
STORE_ERRORS = Counter("alarm_bridge_store_errors_total", "Store calls that failed or timed out.")
STORE_FAILOVERS = Counter(
    "alarm_bridge_store_failovers_total", "Changes of the Redis primary that Sentinel named to this process."
)
REPLICA_ACKS = Counter(
    "alarm_bridge_store_replica_acks_total",
    "Outbox writes of accepted alarms waited on for store.min_replicas replicas (WAIT), by result "
    "(acknowledged | too_few).",
    ["result"],
)
TOKEN_REFRESHES = Counter(
    "alarm_bridge_token_refreshes_total", "Upstream access tokens fetched or refreshed.", ["vendor"]
)
TEMPLATE_ERRORS = Counter("alarm_bridge_template_errors_total", "Templates that failed to render.")
CONFIG_RELOADS = Counter("alarm_bridge_config_reloads_total", "Config reload attempts, by result.", ["result"])
CONFIG_LAST_RELOAD_SUCCESSFUL = Gauge(
    "alarm_bridge_config_last_reload_successful", "Whether the last config reload attempt succeeded (1) or not (0)."
)
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP = Gauge(
    "alarm_bridge_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful config load.",
)
BUILD_INFO = Info("alarm_bridge_build", "The gateway's version and the Python that runs it.")

BUILD_INFO.info({"version": __version__, "python": platform.python_version()})
for _result in ("success", "failure"):  # both series exist from the start, so rate() and increase() see the first one
    CONFIG_RELOADS.labels(result=_result)
for _result in ("acknowledged", "too_few"):
    REPLICA_ACKS.labels(result=_result)
CONFIG_LAST_RELOAD_SUCCESSFUL.set(1)


def exposition() -> tuple[bytes, str]:
    """The default registry in the text exposition format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
