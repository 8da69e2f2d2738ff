"""Prometheus metrics of the API server, in a registry owned by one app (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serve.openai.schemas import UsageInfo

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fastchat_lite_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fastchat_lite_request_seconds",
            "Time to the response headers, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "fastchat_lite_time_to_first_token_seconds",
            "Streaming requests: time until every choice produced its first chunk",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "fastchat_lite_requests_in_flight", "Requests being handled", registry=self.registry
        )
        self.prompt_tokens = Counter(
            "fastchat_lite_prompt_tokens_total", "Prompt tokens processed", registry=self.registry
        )
        self.completion_tokens = Counter(
            "fastchat_lite_completion_tokens_total", "Tokens generated", registry=self.registry
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def observe_tokens(self, usage: UsageInfo) -> None:
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.completion_tokens.inc(usage.completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
