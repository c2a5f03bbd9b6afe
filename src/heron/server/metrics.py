"""Prometheus metrics of the HTTP server: requests, errors and latency per route.

Each app has its own registry (several apps in one process — tests — do not collide). Routes are
labelled by their template (``/v1/search``), unmatched paths as ``unmatched``, so the label set stays
small whatever clients send.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

#: latency buckets in seconds (1 ms … 10 s)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("heron_requests", "HTTP requests by route, method and status",
                                ("route", "method", "status"), registry=self.registry)
        self.errors = Counter("heron_request_errors", "HTTP responses with status >= 400 by route and status",
                              ("route", "status"), registry=self.registry)
        self.latency = Histogram("heron_request_seconds", "request latency by route", ("route",),
                                 buckets=BUCKETS, registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
