"""Helpers for the queue and worker tests: a hand-moved clock, review jobs, a fast retry policy."""

from __future__ import annotations

from typing import Any

from reviewbot.jobs import Job, JobQueue, JobStatus, RetryPolicy

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, jitter=0)


class Clock:
    """A hand-moved clock shared by queue instances and workers."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def review(
    delivery: str,
    *,
    number: int = 7,
    head: str | None = "a" * 40,
    trigger: Any = "auto",
    owner: str = "octo",
    repo: str = "hello",
    **extra: Any,
) -> Job:
    return Job(
        kind="review",
        delivery_id=delivery,
        owner=owner,
        repo=repo,
        number=number,
        head_sha=head,
        trigger=trigger,
        installation_id=99,
        extra=extra,
    )


def snapshots(delivery: str) -> Job:
    return Job("snapshots", delivery, "octo", "hello", None, "a" * 40, "workflow_run")


async def status_of(queue: JobQueue, delivery: str) -> JobStatus:
    [record] = await queue.records(delivery)
    return record.status
