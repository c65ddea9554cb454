"""The handwritten Prometheus exposition."""

import re

from connectors.api.metrics import PRODUCE_LATENCY_BUCKETS, ApiMetrics


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_counters_and_labels_render():
    metrics = ApiMetrics()
    metrics.request_finished("/v1/events", 202)
    metrics.request_finished("/v1/events", 202)
    metrics.request_finished("/v1/track", 401)
    metrics.events_accepted(5)
    metrics.events_duplicate(2)
    metrics.events_rejected("invalid", 3)
    text = metrics.render()
    assert sample(text, 'tidings_api_requests_total{path="/v1/events",status="202"}') == 2
    assert sample(text, 'tidings_api_requests_total{path="/v1/track",status="401"}') == 1
    assert sample(text, "tidings_events_accepted_total") == 5
    assert sample(text, "tidings_events_duplicate_total") == 2
    assert sample(text, 'tidings_events_rejected_total{reason="invalid"}') == 3
    assert "# TYPE tidings_produce_latency_seconds histogram" in text


def test_histogram_buckets_are_cumulative_with_sum_and_count():
    metrics = ApiMetrics()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 99.0):
        metrics.produce_latency(seconds)
    text = metrics.render()
    assert sample(text, 'tidings_produce_latency_seconds_bucket{le="0.001"}') == 1
    assert sample(text, 'tidings_produce_latency_seconds_bucket{le="0.005"}') == 3
    assert sample(text, 'tidings_produce_latency_seconds_bucket{le="0.25"}') == 4
    assert sample(text, f'tidings_produce_latency_seconds_bucket{{le="{int(PRODUCE_LATENCY_BUCKETS[-1])}"}}') == 4
    assert sample(text, 'tidings_produce_latency_seconds_bucket{le="+Inf"}') == 5
    assert sample(text, "tidings_produce_latency_seconds_count") == 5
    assert abs(sample(text, "tidings_produce_latency_seconds_sum") - 99.2065) < 1e-9


def test_label_values_are_escaped():
    metrics = ApiMetrics()
    metrics.events_rejected('we"ird\n', 1)
    assert 'reason="we\\"ird\\n"' in metrics.render()
