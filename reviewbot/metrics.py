"""Prometheus metrics: what the service receives, queues, reviews and asks of others.

One process-wide registry, as prometheus-client intends; each process (server or worker)
exposes its own numbers and Prometheus adds them up.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "reviewbot_deliveries",
    "Webhook deliveries received, by event and outcome",
    ["event", "outcome"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "reviewbot_queue_depth", "Jobs waiting in the queue (read at scrape time)", registry=REGISTRY
)
JOBS = Counter(
    "reviewbot_jobs", "Jobs finished, by kind and outcome", ["kind", "outcome"], registry=REGISTRY
)
REVIEW_SECONDS = Histogram(
    "reviewbot_review_seconds",
    "Time from a review job's start to its review being posted",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
GITHUB_CALLS = Counter("reviewbot_github_api_calls", "GitHub API calls made", registry=REGISTRY)
GITHUB_RATE_LIMIT = Gauge(
    "reviewbot_github_rate_limit_remaining",
    "The last x-ratelimit-remaining GitHub reported",
    registry=REGISTRY,
)
REGISTRY_LOOKUPS = Counter(
    "reviewbot_registry_lookups", "Package publish-time look-ups asked for", registry=REGISTRY
)
REGISTRY_CACHE_HITS = Counter(
    "reviewbot_registry_cache_hits", "Look-ups answered from the cache", registry=REGISTRY
)

# Label values come from an untrusted header: anything else is counted as "other".
KNOWN_EVENTS = frozenset(
    {
        "ping",
        "pull_request",
        "issue_comment",
        "workflow_run",
        "installation",
        "installation_repositories",
        "pull_request_review",
        "check_run",
        "check_suite",
        "push",
    }
)


def event_label(name: str | None) -> str:
    return name if name in KNOWN_EVENTS else "other"


def exposition() -> bytes:
    return generate_latest(REGISTRY)
