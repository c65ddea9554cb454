"""The API's Prometheus metrics, kept in memory and rendered in the text exposition format by hand."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

PRODUCE_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class ApiMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._rejected: Counter[str] = Counter()
        self._accepted = 0
        self._duplicates = 0
        self._latency_buckets = [0] * len(PRODUCE_LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def request_finished(self, path: str, status: int) -> None:
        with self._lock:
            self._requests[(path, status)] += 1

    def events_accepted(self, count: int) -> None:
        with self._lock:
            self._accepted += count

    def events_duplicate(self, count: int) -> None:
        with self._lock:
            self._duplicates += count

    def events_rejected(self, reason: str, count: int) -> None:
        with self._lock:
            self._rejected[reason] += count

    def produce_latency(self, seconds: float) -> None:
        with self._lock:
            index = bisect_left(PRODUCE_LATENCY_BUCKETS, seconds)
            if index < len(self._latency_buckets):
                self._latency_buckets[index] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP tidings_api_requests_total HTTP requests answered, by route and status.",
                "# TYPE tidings_api_requests_total counter",
                *(
                    f'tidings_api_requests_total{{path="{_label(path)}",status="{status}"}} {count}'
                    for (path, status), count in sorted(self._requests.items())
                ),
                "# HELP tidings_events_accepted_total Events acknowledged by Kafka.",
                "# TYPE tidings_events_accepted_total counter",
                f"tidings_events_accepted_total {self._accepted}",
                "# HELP tidings_events_rejected_total Events refused, by reason (1 per request when the count is unknown).",
                "# TYPE tidings_events_rejected_total counter",
                *(
                    f'tidings_events_rejected_total{{reason="{_label(reason)}"}} {count}'
                    for reason, count in sorted(self._rejected.items())
                ),
                "# HELP tidings_events_duplicate_total Events skipped because their id was already acknowledged.",
                "# TYPE tidings_events_duplicate_total counter",
                f"tidings_events_duplicate_total {self._duplicates}",
                "# HELP tidings_produce_latency_seconds Time from producing a request's events to Kafka's last acknowledgement.",
                "# TYPE tidings_produce_latency_seconds histogram",
            ]
            cumulative = 0
            for bound, count in zip(PRODUCE_LATENCY_BUCKETS, self._latency_buckets, strict=True):
                cumulative += count
                lines.append(f'tidings_produce_latency_seconds_bucket{{le="{_number(bound)}"}} {cumulative}')
            lines += [
                f'tidings_produce_latency_seconds_bucket{{le="+Inf"}} {self._latency_count}',
                f"tidings_produce_latency_seconds_sum {self._latency_sum!r}",
                f"tidings_produce_latency_seconds_count {self._latency_count}",
            ]
        return "\n".join(lines) + "\n"
