"""Own background work: the ``Job``, the queue protocol, the embedded SQLite queue, the worker.

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

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import os
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from reviewbot.logs import log_context, redact
from reviewbot.settings import Settings

logger = logging.getLogger(__name__)

JobKind = Literal["review", "snapshots"]
# auto: a push/open event (the pipeline may skip a PR that touches nothing it reviews);
# requested: the bot was (re-)requested as reviewer; command: a `/codereview` comment;
# workflow_run: a finished snapshot workflow.
Trigger = Literal["auto", "requested", "command", "workflow_run"]
FORCED_TRIGGERS: frozenset[str] = frozenset({"requested", "command"})

_MAX_ERROR_CHARS = 2000
_MAX_COALESCED_IDS = 50
# Retry-After values beyond this are not waited for: the budget would be gone for nothing.
_MAX_RETRY_AFTER_SECONDS = 3600.0
# Floor for waiting on a job that is due now but was claimed elsewhere: never spin.
_MIN_WAIT_SECONDS = 0.01


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


# ---- the embedded SQLite queue -----------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL UNIQUE,
    delivery_id TEXT NOT NULL,
    coalesce_key TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_owner TEXT,
    lease_expires REAL,
    last_error TEXT,
    superseded_by INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (status, available_at);
CREATE INDEX IF NOT EXISTS jobs_by_pr ON jobs (coalesce_key, status);
CREATE INDEX IF NOT EXISTS jobs_by_delivery ON jobs (delivery_id);
"""

_T = TypeVar("_T")


class SqliteJobQueue:
    """The default queue: one SQLite file in WAL mode, safe across threads and processes.

    Every statement runs on one dedicated thread (one connection), so the event loop never
    waits on the disk; claims and enqueues are ``BEGIN IMMEDIATE`` transactions, so two
    processes on the same file never claim the same job.
    """

    def __init__(
        self,
        path: Path,
        *,
        lease_seconds: float = 60.0,
        retention_seconds: float = 14 * 86400,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease_seconds <= 0 or retention_seconds <= 0 or busy_timeout <= 0:
            raise ValueError("lease, retention and busy timeout must be positive")
        self.path = path
        self._lease = lease_seconds
        self._retention = retention_seconds
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reviewbot-queue")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._wakeup: asyncio.Event | None = None
        self._batch: list[tuple[Job, str, asyncio.Future[EnqueueResult]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteJobQueue:
        return cls(
            settings.queue_path,
            lease_seconds=settings.job_lease_seconds,
            retention_seconds=settings.job_retention_days * 86400,
        )

    @property
    def lease_seconds(self) -> float:
        return self._lease

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise QueueError("the job queue is closed")
        loop = asyncio.get_running_loop()
        # Carry the log context (delivery id) into the store's thread.
        context = contextvars.copy_context()
        try:
            return await loop.run_in_executor(self._executor, context.run, fn, *args)
        except (sqlite3.Error, OSError) as error:
            raise QueueError(f"job store {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a delivery GitHub was told "queued" survives a power cut, not only a
                # process crash (GitHub does not resend on its own).
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._connection)

    async def close(self) -> None:
        if self._closed:
            return
        if self._flusher is not None:
            await self._flusher  # queued enqueues are written (or failed), never dropped

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._closed = True
        self._executor.shutdown(wait=False)

    async def ping(self) -> None:
        def _ping() -> None:
            with self._transaction() as conn:
                conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()

        await self._run(_ping)

    # -- producing --------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> EnqueueResult:
        payload = job.to_json()  # fails here, in the caller, if extra is not JSON-able
        if self._closed:
            raise QueueError("the job queue is closed")
        # Group commit: enqueues arriving while a write is in flight share the next
        # transaction, so a burst of deliveries costs one fsync per batch, not one each.
        done: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._batch.append((job, payload, done))
        if self._flusher is None or self._flusher.done():
            # A fresh context: the flusher serves many deliveries, not its first caller's.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        result = await done
        if result.status is not EnqueueStatus.DUPLICATE:
            self._notify()
        return result

    async def _flush(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                results = await self._run(
                    self._enqueue_all, [(job, text) for job, text, _ in batch]
                )
            except Exception as error:  # every waiter gets the store's failure, none hangs
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for (_, _, done), result in zip(batch, results, strict=True):
                if not done.done():  # the caller may have given up waiting (timeout)
                    done.set_result(result)

    def _enqueue_all(self, jobs: list[tuple[Job, str]]) -> list[EnqueueResult]:
        now = self._clock()
        with self._transaction() as conn:
            return [_enqueue_one(conn, job, payload, now) for job, payload in jobs]

    # -- consuming --------------------------------------------------------------------------

    async def claim(self, worker_id: str) -> Job | None:
        job, recovered = await self._run(self._claim, worker_id)
        for job_id, owner in recovered:
            logger.warning("job %s: lease of worker %s expired; job requeued", job_id, owner)
        return job

    def _claim(self, worker_id: str) -> tuple[Job | None, list[tuple[int, str]]]:
        now = self._clock()
        with self._transaction() as conn:
            expired = conn.execute(
                "SELECT id, lease_owner, coalesce_key FROM jobs"
                " WHERE status = 'running' AND lease_expires <= ?",
                (now,),
            ).fetchall()
            if expired:
                conn.executemany(
                    "UPDATE jobs SET status = 'pending', lease_owner = NULL, lease_expires = NULL,"
                    " available_at = ?, updated_at = ? WHERE id = ?",
                    [(now, now, row["id"]) for row in expired],
                )
                for key in {row["coalesce_key"] for row in expired}:
                    _coalesce(conn, key, now)
            # Jobs of one PR never run side by side: a newer one waits for the running one.
            row = conn.execute(
                "SELECT id, payload, attempts FROM jobs"
                " WHERE status = 'pending' AND available_at <= ?"
                " AND (coalesce_key IS NULL OR coalesce_key NOT IN"
                "   (SELECT coalesce_key FROM jobs"
                "    WHERE status = 'running' AND coalesce_key IS NOT NULL))"
                " ORDER BY available_at, id LIMIT 1",
                (now,),
            ).fetchone()
            job = None
            if row is not None:
                attempt = int(row["attempts"]) + 1
                conn.execute(
                    "UPDATE jobs SET status = 'running', attempts = ?, lease_owner = ?,"
                    " lease_expires = ?, updated_at = ? WHERE id = ?",
                    (attempt, worker_id, now + self._lease, now, row["id"]),
                )
                job = Job.from_json(
                    row["payload"], id=int(row["id"]), attempt=attempt, claimed_by=worker_id
                )
        return job, [(int(row["id"]), str(row["lease_owner"])) for row in expired]

    async def heartbeat(self, job: Job) -> bool:
        def _heartbeat() -> bool:
            now = self._clock()
            with self._transaction() as conn:
                cursor = conn.execute(
                    "UPDATE jobs SET lease_expires = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                    (now + self._lease, now, job.id, job.claimed_by),
                )
                return cursor.rowcount == 1

        return await self._run(_heartbeat)

    async def complete(self, job: Job) -> None:
        def _complete() -> bool:
            now = self._clock()
            with self._transaction() as conn:
                cursor = conn.execute(
                    "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires = NULL,"
                    " last_error = NULL, updated_at = ?"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                    (now, job.id, job.claimed_by),
                )
                return cursor.rowcount == 1

        if not await self._run(_complete):
            _log_lost_lease(job, "done")

    async def fail(self, job: Job, error: BaseException, retry_at: float | None) -> None:
        message = redact(f"{type(error).__name__}: {error}")[:_MAX_ERROR_CHARS]

        def _fail() -> bool:
            now = self._clock()
            with self._transaction() as conn:
                if retry_at is None:
                    cursor = conn.execute(
                        "UPDATE jobs SET status = 'failed', lease_owner = NULL,"
                        " lease_expires = NULL, last_error = ?, updated_at = ?"
                        " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                        (message, now, job.id, job.claimed_by),
                    )
                    return cursor.rowcount == 1
                cursor = conn.execute(
                    "UPDATE jobs SET status = 'pending', lease_owner = NULL, lease_expires = NULL,"
                    " available_at = ?, last_error = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                    (retry_at, message, now, job.id, job.claimed_by),
                )
                # A newer job for the PR arrived meanwhile: it replaces this retry.
                _coalesce(conn, job.coalesce_key, now)
                return cursor.rowcount == 1

        if not await self._run(_fail):
            _log_lost_lease(job, "failed" if retry_at is None else "retried")
        elif retry_at is not None:
            self._notify()

    async def release(self, job: Job) -> None:
        def _release() -> None:
            now = self._clock()
            with self._transaction() as conn:
                conn.execute(
                    "UPDATE jobs SET status = 'pending', attempts = MAX(attempts - 1, 0),"
                    " lease_owner = NULL, lease_expires = NULL, available_at = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                    (now, now, job.id, job.claimed_by),
                )
                _coalesce(conn, job.coalesce_key, now)

        await self._run(_release)
        self._notify()

    # -- inspection -------------------------------------------------------------------------

    async def depth(self) -> int:
        def _depth() -> int:
            row = (
                self._connection()
                .execute("SELECT COUNT(*) FROM jobs WHERE status = 'pending'")
                .fetchone()
            )
            return int(row[0])

        return await self._run(_depth)

    async def records(self, delivery_id: str) -> list[JobRecord]:
        def _records() -> list[JobRecord]:
            rows = (
                self._connection()
                .execute("SELECT * FROM jobs WHERE delivery_id = ? ORDER BY id", (delivery_id,))
                .fetchall()
            )
            return [
                JobRecord(
                    job=Job.from_json(row["payload"], id=int(row["id"])),
                    status=JobStatus(row["status"]),
                    attempts=int(row["attempts"]),
                    last_error=row["last_error"],
                    superseded_by=row["superseded_by"],
                )
                for row in rows
            ]

        return await self._run(_records)

    async def is_done(self, delivery_id: str) -> bool:
        records = await self.records(delivery_id)
        finished = {JobStatus.DONE, JobStatus.SUPERSEDED}
        return bool(records) and all(record.status in finished for record in records)

    async def wait_for_job(self, timeout: float) -> None:
        # Enqueues in this process wake the worker at once; a retry or an expiring lease is
        # waited for until exactly its time; other processes' enqueues show up by the timeout.
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        due = await self._run(self._next_due)
        if due is not None:
            timeout = min(timeout, max(due - self._clock(), _MIN_WAIT_SECONDS))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()

    def _next_due(self) -> float | None:
        row = (
            self._connection()
            .execute(
                "SELECT MIN(due) FROM ("
                " SELECT MIN(available_at) AS due FROM jobs WHERE status = 'pending'"
                " AND (coalesce_key IS NULL OR coalesce_key NOT IN"
                "   (SELECT coalesce_key FROM jobs"
                "    WHERE status = 'running' AND coalesce_key IS NOT NULL))"
                " UNION ALL"
                " SELECT MIN(lease_expires) FROM jobs WHERE status = 'running')"
            )
            .fetchone()
        )
        return None if row[0] is None else float(row[0])

    async def prune(self) -> int:
        def _prune() -> int:
            cutoff = self._clock() - self._retention
            with self._transaction() as conn:
                cursor = conn.execute(
                    "DELETE FROM jobs WHERE status IN ('done', 'failed', 'superseded')"
                    " AND updated_at < ?",
                    (cutoff,),
                )
                return cursor.rowcount

        return await self._run(_prune)


def _enqueue_one(conn: sqlite3.Connection, job: Job, payload: str, now: float) -> EnqueueResult:
    """Record one job inside the caller's transaction (dedup, then coalesce)."""
    row = conn.execute(
        "SELECT id, status FROM jobs WHERE dedup_key = ?", (job.dedup_key,)
    ).fetchone()
    if row is not None and row["status"] != JobStatus.FAILED.value:
        return EnqueueResult(EnqueueStatus.DUPLICATE, row["id"])
    if row is not None:
        # A redelivery of a delivery that gave up: the maintainer is retrying it.
        job_id = int(row["id"])
        conn.execute(
            "UPDATE jobs SET status = 'pending', attempts = 0, available_at = ?,"
            " payload = ?, coalesce_key = ?, last_error = NULL, lease_owner = NULL,"
            " lease_expires = NULL, updated_at = ? WHERE id = ?",
            (now, payload, job.coalesce_key, now, job_id),
        )
    else:
        cursor = conn.execute(
            "INSERT INTO jobs (dedup_key, delivery_id, coalesce_key, payload, status,"
            " available_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
            (job.dedup_key, job.delivery_id, job.coalesce_key, payload, now, now, now),
        )
        assert cursor.lastrowid is not None
        job_id = cursor.lastrowid
    superseded = _coalesce(conn, job.coalesce_key, now)
    status = EnqueueStatus.COALESCED if superseded else EnqueueStatus.NEW
    return EnqueueResult(status, job_id, superseded)


def _log_lost_lease(job: Job, outcome: str) -> None:
    # Only the lease holder records an outcome; a worker that lost the lease (it stalled
    # past it and another worker took the job over) must not overwrite the new holder's.
    logger.warning("job %s: not recorded as %s, its lease is no longer ours", job.id, outcome)


def _coalesce(conn: sqlite3.Connection, key: str | None, now: float) -> tuple[str, ...]:
    """Keep only the newest queued job of a PR; it inherits an explicit request's trigger."""
    if key is None:
        return ()
    rows = conn.execute(
        "SELECT id, delivery_id, payload FROM jobs"
        " WHERE coalesce_key = ? AND status = 'pending' ORDER BY id",
        (key,),
    ).fetchall()
    if len(rows) < 2:
        return ()
    keep, older = rows[-1], rows[:-1]
    kept = Job.from_json(keep["payload"])
    trigger = kept.trigger
    folded: list[str] = list(kept.extra.get("coalesced_deliveries", []))
    for row in older:
        job = Job.from_json(row["payload"])
        if job.forced and not kept.forced:
            trigger = job.trigger  # the latest explicit request wins
        folded.extend([*job.extra.get("coalesced_deliveries", []), job.delivery_id])
    extra = {**kept.extra, "coalesced_deliveries": folded[-_MAX_COALESCED_IDS:]}
    merged = dataclasses.replace(kept, trigger=trigger, extra=extra)
    conn.execute(
        "UPDATE jobs SET payload = ?, updated_at = ? WHERE id = ?",
        (merged.to_json(), now, keep["id"]),
    )
    conn.executemany(
        "UPDATE jobs SET status = 'superseded', superseded_by = ?, updated_at = ? WHERE id = ?",
        [(keep["id"], now, row["id"]) for row in older],
    )
    return tuple(str(row["delivery_id"]) for row in older)


# ---- the worker ----------------------------------------------------------------------------


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


def new_worker_id() -> str:
    """Host and pid (for operators reading a stuck lease) plus a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Claims jobs and runs ``handler`` on each, ``concurrency`` at a time, until stopped."""

    def __init__(
        self,
        queue: JobQueue,
        handler: JobHandler,
        *,
        on_give_up: GiveUpHandler | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1 or poll_interval <= 0:
            raise ValueError("concurrency must be >= 1 and poll_interval > 0")
        self.queue = queue
        self.handler = handler
        self.on_give_up = on_give_up
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.worker_id = worker_id or new_worker_id()
        self._clock = clock
        self._stopping = asyncio.Event()
        self._idle: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls,
        queue: JobQueue,
        handler: JobHandler,
        settings: Settings,
        *,
        on_give_up: GiveUpHandler | None = None,
    ) -> Worker:
        return cls(
            queue,
            handler,
            on_give_up=on_give_up,
            retry=RetryPolicy.from_settings(settings),
            concurrency=settings.worker_concurrency,
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Process jobs until ``stop()``; returns when every loop has ended.

        A stop requested before the loops started (even before this call) is honoured.
        """
        if self._stopping.is_set():
            return
        self._loops = [asyncio.create_task(self._loop()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*self._loops, return_exceptions=True)
        finally:
            self._loops = []

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._loops)

    async def stop(self, timeout: float = 25.0) -> None:
        """Stop claiming; let running jobs finish for ``timeout`` seconds, then cancel them.

        A cancelled job is released back to the queue (its attempt not counted).
        """
        self._stopping.set()
        for task in list(self._idle):
            task.cancel()
        loops = [task for task in self._loops if not task.done()]
        if not loops:
            return
        _, still_running = await asyncio.wait(loops, timeout=timeout)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running)

    async def run_once(self) -> bool:
        """Claim and process one runnable job; False when there was none."""
        job = await self.queue.claim(self.worker_id)
        if job is None:
            return False
        await self.process(job)
        return True

    async def run_until_idle(self) -> int:
        """Process jobs until none is runnable now (tests, replay); returns how many ran."""
        count = 0
        while await self.run_once():
            count += 1
        return count

    async def _loop(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping.is_set():
            self._idle.add(task)
            try:
                job = await self.queue.claim(self.worker_id)
                if job is None:
                    await self.queue.wait_for_job(self.poll_interval)
                    continue
            except QueueError:
                logger.exception("cannot claim a job; retrying in %.1fs", self.poll_interval)
                await asyncio.sleep(self.poll_interval)
                continue
            except asyncio.CancelledError:
                return  # stopped while idle
            finally:
                self._idle.discard(task)
            try:
                await self.process(job)
            except QueueError:
                # The store failed to record the outcome; the lease will expire and the job
                # run again, where the pipeline's own "already posted?" check stops a repeat.
                logger.exception("job %s: cannot record its outcome", job.id)

    # -- one job ------------------------------------------------------------------------------

    async def process(self, job: Job) -> None:
        """Run the handler on a claimed job and record the outcome; never raises for it."""
        with log_context(
            delivery_id=job.delivery_id, repo=job.full_name, pr=job.number, head=job.head_sha
        ):
            if job.attempt > self.retry.max_attempts:
                # Only reachable through expired leases: the job keeps killing its worker.
                error = PermanentJobError(
                    f"gave up after {job.attempt - 1} attempts (the worker running it was lost)"
                )
                logger.error("job %s (%s): %s", job.id, job.kind, error)
                await self._give_up(job, error)
                return
            logger.info(
                "job %s (%s, %s) started, attempt %d", job.id, job.kind, job.trigger, job.attempt
            )
            started = time.monotonic()
            running = asyncio.ensure_future(self.handler(job))
            heartbeat = asyncio.create_task(self._heartbeat(job, running))
            try:
                await running
            except TransientJobError as error:
                await self._transient(job, error)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is None or not current.cancelling():
                    # Cancelled by the heartbeat, not by a shutdown: another worker owns the
                    # job now, and recording anything here would overwrite its outcome.
                    logger.warning("job %s abandoned: its lease passed to another worker", job.id)
                    return
                await asyncio.shield(self.queue.release(job))
                logger.warning("job %s interrupted by shutdown; released to the queue", job.id)
                raise
            except Exception as error:
                # The single boundary for handler bugs: log with the delivery id (context),
                # tell the PR (on_give_up), keep the worker alive.
                logger.exception("job %s (%s) failed permanently", job.id, job.kind)
                await self._give_up(job, error)
            else:
                await self.queue.complete(job)
                logger.info("job %s done in %.2fs", job.id, time.monotonic() - started)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    async def _transient(self, job: Job, error: TransientJobError) -> None:
        if job.attempt >= self.retry.max_attempts:
            logger.error(
                "job %s: transient failure on the last of %d attempts, giving up: %s",
                job.id,
                self.retry.max_attempts,
                error,
            )
            await self._give_up(job, error)
            return
        delay = self.retry.delay(job.attempt, error.retry_after)
        logger.warning(
            "job %s: transient failure (attempt %d of %d), retrying in %.1fs: %s",
            job.id,
            job.attempt,
            self.retry.max_attempts,
            delay,
            error,
        )
        await self.queue.fail(job, error, retry_at=self._clock() + delay)

    async def _give_up(self, job: Job, error: BaseException) -> None:
        # The callback runs before the job is marked failed: if we die in between, the job is
        # run again rather than left failed without a word on the PR.
        if self.on_give_up is not None:
            try:
                await self.on_give_up(job, error)
            except Exception:
                logger.exception("job %s: the give-up callback failed", job.id)
        await self.queue.fail(job, error, retry_at=None)

    async def _heartbeat(self, job: Job, running: asyncio.Future[None]) -> None:
        """Renew the lease while the handler runs; stop the handler if the lease is lost."""
        interval = self.queue.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.queue.heartbeat(job):
                    # The lease expired (loop or store stalled) and another worker took the
                    # job: two reviews of one delivery is what the lease exists to prevent.
                    logger.warning("job %s: lease lost to another worker", job.id)
                    running.cancel()
                    return
            except QueueError:
                logger.exception("job %s: cannot renew the lease", job.id)


def handlers_by_kind(handlers: Mapping[str, JobHandler]) -> JobHandler:
    """One handler dispatching on ``job.kind``; an unknown kind is a permanent error."""

    async def dispatch(job: Job) -> None:
        handler = handlers.get(job.kind)
        if handler is None:
            raise PermanentJobError(f"no handler for jobs of kind {job.kind!r}")
        await handler(job)

    return dispatch
