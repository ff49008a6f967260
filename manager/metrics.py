"""Prometheus series of the manager, named and labelled as controller-runtime does.

Everything is registered in prometheus-client's default registry, which the
HTTP server exposes at `/metrics`. The controller-runtime families keep their
upstream names and labels so existing dashboards and alerts work unchanged:

- `controller_runtime_reconcile_total{controller,result}` (result: success|error|requeue|requeue_after),
  `controller_runtime_reconcile_errors_total{controller}`, `controller_runtime_reconcile_time_seconds{controller}`,
  `controller_runtime_active_workers{controller}`, `controller_runtime_max_concurrent_reconciles{controller}`;
- `workqueue_*{name,controller}` as client-go's workqueue metrics provider;
- `rest_client_requests_total{code,method,host}`, `leader_election_master_status{name}`;
- `controller_runtime_webhook_requests_total{webhook,code}`, `controller_runtime_webhook_latency_seconds{webhook}`
  for the admission webhook (`webhook` is its path, `/validate`).

Digi's own series:

- `digi_digis{kind,namespace}`: digis in the informer cache (computed at scrape time);
- `digi_workers{state}`: workers per state (starting|running|backoff|stopped|deployed);
- `digi_dispatch_latency_seconds`: from the watch event reaching the manager to the
  event being handed to the digi's worker connection.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

disable_created_metrics()

_QUEUE_LABELS = ("name", "controller")
# client-go's workqueue buckets: 1 ns to 10 s, exponential by 10.
_QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 2))

reconcile_total = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ("controller", "result"),
)
reconcile_errors_total = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ("controller",),
)
reconcile_time_seconds = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ("controller",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
             0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9,
             10, 15, 20, 25, 30, 40, 50, 60),
)
active_workers = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ("controller",),
)
max_concurrent_reconciles = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ("controller",),
)

workqueue_depth = Gauge("workqueue_depth", "Current depth of workqueue", _QUEUE_LABELS)
workqueue_adds_total = Counter(
    "workqueue_adds_total", "Total number of adds handled by workqueue", _QUEUE_LABELS
)
workqueue_queue_duration_seconds = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    _QUEUE_LABELS,
    buckets=_QUEUE_BUCKETS,
)
workqueue_work_duration_seconds = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes",
    _QUEUE_LABELS,
    buckets=_QUEUE_BUCKETS,
)
workqueue_retries_total = Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue", _QUEUE_LABELS
)
workqueue_unfinished_work_seconds = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed "
    "by work_duration. Large values indicate stuck threads.",
    _QUEUE_LABELS,
)
workqueue_longest_running_processor_seconds = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    _QUEUE_LABELS,
)

rest_client_requests_total = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ("code", "method", "host"),
)
leader_election_master_status = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
    "1 indicates master. 'name' is the string used to identify the lease.",
    ("name",),
)

webhook_requests_total = Counter(
    "controller_runtime_webhook_requests_total",
    "Total number of admission requests by HTTP status code.",
    ("webhook", "code"),
)
webhook_latency_seconds = Histogram(
    "controller_runtime_webhook_latency_seconds",
    "Histogram of the latency of processing admission requests",
    ("webhook",),
)

dispatch_latency_seconds = Histogram(
    "digi_dispatch_latency_seconds",
    "Seconds from a digi's watch event reaching the manager to its worker connection",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class _ScrapeTimeGauge(Collector):
    """A gauge family whose samples are computed from live state at each scrape,
    so it can never drift from the cache or the worker table it describes."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...],
        sample: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
    ) -> None:
        self._name, self._doc, self._labels, self._sample = name, doc, labels, sample

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=list(self._labels))
        for values, value in self._sample():
            family.add_metric(list(values), value)
        yield family


def register_digis(count: Callable[[], Tally[tuple[str, str]]]) -> Collector:
    """`digi_digis{kind,namespace}` from `count()`: (kind, namespace) → number of digis."""
    collector = _ScrapeTimeGauge(
        "digi_digis", "Digis known to the manager, per kind and namespace", ("kind", "namespace"),
        lambda: (((kind, ns), float(n)) for (kind, ns), n in count().items()),
    )
    REGISTRY.register(collector)
    return collector


def register_workers(count: Callable[[], Tally[str]]) -> Collector:
    """`digi_workers{state}` from `count()`: state → number of workers."""
    collector = _ScrapeTimeGauge(
        "digi_workers", "Digi workers per state", ("state",),
        lambda: (((state,), float(n)) for state, n in count().items()),
    )
    REGISTRY.register(collector)
    return collector
