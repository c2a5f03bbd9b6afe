"""Prometheus metrics of the HTTP server: requests, errors and latency per route, and the search lanes.

Each app has its own registry (several apps in one process — tests — do not collide). Routes are
labelled by their template (``/v1/search``), unmatched paths as ``unmatched``, so the label set stays
small whatever clients send. Per lane (``query``, ``batch``; :mod:`heron.server.scheduler`): requests
running and waiting, refused (429) and timed out (503), queries searched; and the busy pool threads.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

#: latency buckets in seconds (1 ms … 10 s)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, scheduler=None):
        self.registry = CollectorRegistry()
        self.requests = Counter("heron_requests", "HTTP requests by route, method and status",
                                ("route", "method", "status"), registry=self.registry)
        self.errors = Counter("heron_request_errors", "HTTP responses with status >= 400 by route and status",
                              ("route", "status"), registry=self.registry)
        self.latency = Histogram("heron_request_seconds", "request latency by route", ("route",),
                                 buckets=BUCKETS, registry=self.registry)
        if scheduler is not None:
            self.registry.register(_LaneCollector(scheduler))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LaneCollector:
    """The scheduler's lanes, read when /metrics is scraped."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def collect(self):
        lanes = self.scheduler.lanes.values()
        families = [
            (GaugeMetricFamily, "heron_search_running", "requests holding a lane slot", "running"),
            (GaugeMetricFamily, "heron_search_waiting", "requests waiting for a lane slot", "waiting"),
            (CounterMetricFamily, "heron_search_rejected", "requests refused with 429 (lane queue full)", "rejected"),
            (CounterMetricFamily, "heron_search_timeouts", "requests stopped at their deadline (503)", "timeouts"),
            (CounterMetricFamily, "heron_search_queries", "queries searched on the pool", "searched"),
        ]
        for kind, name, doc, attr in families:
            family = kind(name, doc, labels=["lane"])
            for lane in lanes:
                family.add_metric([lane.name], getattr(lane, attr))
            yield family
        busy = GaugeMetricFamily("heron_search_busy_threads", "pool threads running a search now")
        busy.add_metric([], self.scheduler.busy)
        yield busy
