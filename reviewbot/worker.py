"""Own the worker loop: ``Worker`` claims jobs from any ``JobQueue`` and runs their handler.

Retries with backoff, the give-up callback, lease renewal and graceful shutdown live here, so
every queue implementation (SQLite, Redis) gets the same behaviour from the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping

from reviewbot.jobs import (
    GiveUpHandler,
    Job,
    JobHandler,
    JobQueue,
    PermanentJobError,
    QueueError,
    RetryPolicy,
    TransientJobError,
)
from reviewbot.logs import log_context
from reviewbot.settings import Settings

logger = logging.getLogger(__name__)


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
            except QueueError as error:
                # One line, no traceback: a store outage (Redis restarting) would otherwise
                # print a stack per loop per poll; the message names the store and the cause.
                logger.warning(
                    "cannot claim a job, retrying in %.1fs: %s", self.poll_interval, error
                )
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
