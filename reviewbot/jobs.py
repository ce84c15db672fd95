"""Own the job contract: ``Job``, its statuses and errors, the ``JobQueue`` protocol, retries.

The implementations live apart: ``sqlite_queue`` (the embedded default), ``redis_queue``
(scale-out, imported only when ``REVIEWBOT_QUEUE_URL`` is set) and ``worker`` (runs the jobs
of any queue).

Guarantees (the contract every queue implementation keeps):

- **Exactly once in effect per delivery.** A job is keyed by its ``X-GitHub-Delivery`` id (and
  kind). Enqueueing a delivery that is queued, running, done or superseded does nothing more;
  only a delivery whose job *failed* runs again (a manual redelivery is how a maintainer retries).
  A job is marked done only after its handler returned, i.e. after the review was posted.
- **Coalescing per pull request.** Of the *queued* review jobs of one PR only the newest is kept;
  older ones are marked ``superseded``. The pipeline reviews the PR's current head and checks it
  again before posting, so a queued job for an older head is useless. An explicit request
  (``requested``/``command``) is never lost to coalescing: the surviving job inherits that
  trigger, so the newest head gets the forced, full review the person asked for. A running job
  is never superseded (it checks the head itself before posting); jobs of one PR never run
  concurrently, so a newer one waits for it.
- **Bounded retries.** A handler raising ``TransientJobError`` is retried with exponential
  backoff (honouring ``retry_after``) until ``max_attempts``; then, and at once for any other
  exception, the ``on_give_up`` callback runs (the pipeline posts a short failure note: never
  silence) and the job is marked failed. A handler exception never stops the worker.
- **Crash recovery.** A claimed job holds a lease the worker renews while the handler runs. A
  job whose lease expired (its worker died) is claimed again by the next worker — counted as an
  attempt, so a job that keeps killing its worker also ends in ``on_give_up``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from reviewbot.logs import redact
from reviewbot.settings import Settings

logger = logging.getLogger(__name__)

JobKind = Literal["review", "snapshots"]
# auto: a push/open event (the pipeline may skip a PR that touches nothing it reviews);
# requested: the bot was (re-)requested as reviewer; command: a `/codereview` comment;
# workflow_run: a finished snapshot workflow.
Trigger = Literal["auto", "requested", "command", "workflow_run"]
FORCED_TRIGGERS: frozenset[str] = frozenset({"requested", "command"})

MAX_ERROR_CHARS = 2000
# A job folded together with many pushes remembers only the latest of them.
MAX_COALESCED_IDS = 50
# Retry-After values beyond this are not waited for: the budget would be gone for nothing.
_MAX_RETRY_AFTER_SECONDS = 3600.0


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class EnqueueStatus(StrEnum):
    NEW = "new"  # queued on its own
    COALESCED = "coalesced"  # queued, and folded together with queued jobs of the same PR
    DUPLICATE = "duplicate"  # this delivery is already queued, running, done or superseded


class TransientJobError(Exception):
    """Worth retrying later: network error, 5xx, secondary rate limit."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(Exception):
    """Retrying cannot help (404 PR, malformed job); give up at once."""


class QueueError(Exception):
    """The job store cannot be used (disk full, locked too long, corrupt)."""


@dataclass(frozen=True)
class Job:
    """One unit of background work, as the events router made it from a delivery."""

    kind: JobKind
    delivery_id: str
    owner: str
    repo: str
    number: int | None
    # Unknown for comment commands; the pipeline reads the PR's head anyway.
    head_sha: str | None
    trigger: Trigger
    installation_id: int | None = None
    # Small JSON-able details the handler may want (action, sender, run id, ...).
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Set by the queue on claim.
    id: int | None = None
    attempt: int = 0
    claimed_by: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def dedup_key(self) -> str:
        # One delivery makes at most one job of each kind.
        return f"{self.delivery_id}:{self.kind}"

    @property
    def coalesce_key(self) -> str | None:
        """Queued jobs sharing this key are folded into the newest; None: never folded."""
        if self.kind == "review" and self.number is not None:
            return f"review:{self.owner.lower()}/{self.repo.lower()}#{self.number}"
        return None

    @property
    def forced(self) -> bool:
        """Someone explicitly asked for this review: review even if the head was reviewed."""
        return self.trigger in FORCED_TRIGGERS

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for transient in ("id", "attempt", "claimed_by"):
            data.pop(transient)
        data["extra"] = dict(self.extra)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **claim: Any) -> Job:
        data = json.loads(text)
        return cls(**data, **claim)


@dataclass(frozen=True)
class EnqueueResult:
    status: EnqueueStatus
    job_id: int
    # Deliveries whose queued jobs were dropped because of this one.
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """What the store knows about one job (for tests, `/readyz` and operators)."""

    job: Job
    status: JobStatus
    attempts: int
    last_error: str | None
    superseded_by: int | None


JobHandler = Callable[[Job], Awaitable[None]]
GiveUpHandler = Callable[[Job, BaseException], Awaitable[None]]


class JobQueue(Protocol):
    """A durable job store shared by the webhook endpoint and the workers."""

    @property
    def lease_seconds(self) -> float: ...

    async def open(self) -> None:
        """Create the store if needed; safe to call twice."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``QueueError`` unless the store can take a write now."""

    async def enqueue(self, job: Job) -> EnqueueResult: ...

    async def claim(self, worker_id: str) -> Job | None:
        """Take the oldest runnable job (leased to ``worker_id``), or None."""

    async def heartbeat(self, job: Job) -> bool:
        """Renew the lease; False if the job is no longer this worker's."""

    async def complete(self, job: Job) -> None:
        """Mark a claimed job done (only while ``job.claimed_by`` holds its lease)."""

    async def fail(self, job: Job, error: BaseException, retry_at: float | None) -> None:
        """Retry at ``retry_at`` (epoch seconds), or mark failed for good when None.

        Like ``complete``, a no-op for a worker that no longer holds the lease.
        """

    async def release(self, job: Job) -> None:
        """Put a claimed job back untouched (worker shutting down); the attempt is not counted."""

    async def depth(self) -> int:
        """Jobs waiting to run."""

    async def is_done(self, delivery_id: str) -> bool:
        """True once every job of the delivery is done or superseded."""

    async def records(self, delivery_id: str) -> list[JobRecord]: ...

    async def wait_for_job(self, timeout: float) -> None:
        """Return when a job may have become runnable, or after ``timeout`` seconds."""

    async def prune(self) -> int:
        """Forget finished jobs past the retention period; returns how many."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    max_attempts: int = 5
    backoff_base: float = 5.0
    backoff_max: float = 900.0
    jitter: float = 0.1  # up to +10 %, so jobs failing together do not retry in lockstep

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise ValueError("invalid retry policy")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.job_max_attempts,
            backoff_base=settings.job_backoff_base_seconds,
            backoff_max=settings.job_backoff_max_seconds,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponential = min(self.backoff_base * 2.0 ** max(attempt - 1, 0), self.backoff_max)
        delay = exponential * (1 + random.uniform(0, self.jitter))
        if retry_after is not None and retry_after > 0:
            # Retrying before GitHub's Retry-After only burns an attempt.
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_SECONDS))
        return delay


def error_text(error: BaseException) -> str:
    """A failure as a store records it: type and message, secrets redacted, size bounded."""
    return redact(f"{type(error).__name__}: {error}")[:MAX_ERROR_CHARS]


def log_lost_lease(job: Job, outcome: str) -> None:
    # Only the lease holder records an outcome; a worker that lost the lease (it stalled
    # past it and another worker took the job over) must not overwrite the new holder's.
    logger.warning("job %s: not recorded as %s, its lease is no longer ours", job.id, outcome)
