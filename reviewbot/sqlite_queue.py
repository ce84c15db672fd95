"""Own the embedded job store: ``SqliteJobQueue``, one SQLite file shared by the processes.

The default queue (no ``REVIEWBOT_QUEUE_URL``). It keeps every guarantee listed in
``reviewbot.jobs`` for any number of processes on one host sharing ``REVIEWBOT_DATA_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from reviewbot.jobs import (
    MAX_COALESCED_IDS,
    EnqueueResult,
    EnqueueStatus,
    Job,
    JobRecord,
    JobStatus,
    QueueError,
    error_text,
    log_lost_lease,
)
from reviewbot.settings import Settings

logger = logging.getLogger(__name__)

# Floor for waiting on a job that is due now but was claimed elsewhere: never spin.
_MIN_WAIT_SECONDS = 0.01

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
            log_lost_lease(job, "done")

    async def fail(self, job: Job, error: BaseException, retry_at: float | None) -> None:
        message = error_text(error)

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
            log_lost_lease(job, "failed" if retry_at is None else "retried")
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
    extra = {**kept.extra, "coalesced_deliveries": folded[-MAX_COALESCED_IDS:]}
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
