"""The worker: retries with backoff, giving up, lease renewal and loss, crashes, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reviewbot.jobs import Job, JobStatus, PermanentJobError, RetryPolicy, TransientJobError
from reviewbot.logs import install_redaction, record_context, uninstall_redaction
from reviewbot.sqlite_queue import SqliteJobQueue
from reviewbot.worker import Worker, handlers_by_kind
from tests.helpers_jobs import FAST, Clock, review, status_of
from tests.helpers_service import RecordingHandler


@pytest.fixture(autouse=True)
def _no_logging_state_leaks() -> Iterator[None]:
    # install_redaction is process-wide; leave other test modules a clean slate.
    yield
    uninstall_redaction()


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteJobQueue]:
    store = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ---- leases and crash recovery --------------------------------------------------------------


async def test_heartbeat_keeps_a_long_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobQueue(path, lease_seconds=0.3)
    thief = SqliteJobQueue(path, lease_seconds=0.3)
    await store.enqueue(review("slow"))
    stolen: list[Job | None] = []

    async def slow(job: Job) -> None:
        for _ in range(4):
            await asyncio.sleep(0.25)
            stolen.append(await thief.claim("thief"))

    await Worker(store, slow, retry=FAST).run_until_idle()
    assert stolen == [None, None, None, None]
    [record] = await store.records("slow")
    assert (record.status, record.attempts) == (JobStatus.DONE, 1)
    await store.close()
    await thief.close()


async def test_a_worker_that_lost_its_lease_abandons_the_job(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "jobs.sqlite3"
    slow_store = SqliteJobQueue(path, lease_seconds=0.15, clock=clock)
    thief_store = SqliteJobQueue(path, lease_seconds=0.15, clock=clock)
    await slow_store.enqueue(review("d1"))
    cancelled = asyncio.Event()
    stolen: list[Job] = []

    async def stalls(job: Job) -> None:
        # The "stall": time jumps past the lease and another worker takes the job.
        clock.advance(1)
        taken = await thief_store.claim("thief")
        assert taken is not None
        stolen.append(taken)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert await Worker(slow_store, stalls, retry=FAST).run_once()
    assert cancelled.is_set()
    [record] = await thief_store.records("d1")
    # Still the thief's: the abandoned run recorded nothing over it.
    assert (record.status, record.attempts) == (JobStatus.RUNNING, 2)
    await thief_store.complete(stolen[0])
    assert await thief_store.is_done("d1")
    await slow_store.close()
    await thief_store.close()


async def test_a_job_that_keeps_killing_its_worker_gives_up(
    queue: SqliteJobQueue, clock: Clock
) -> None:
    store = SqliteJobQueue(queue.path, lease_seconds=5, clock=clock)
    await store.enqueue(review("poison"))
    for _ in range(FAST.max_attempts):
        assert await store.claim("doomed") is not None
        clock.advance(6)
    handler = RecordingHandler()
    given_up: list[tuple[Job, BaseException]] = []

    async def give_up(job: Job, error: BaseException) -> None:
        given_up.append((job, error))

    await Worker(store, handler, on_give_up=give_up, retry=FAST, clock=clock).run_until_idle()
    assert handler.jobs == []
    [(job, error)] = given_up
    assert job.delivery_id == "poison"
    assert "worker running it was lost" in str(error)
    assert await status_of(store, "poison") is JobStatus.FAILED
    await store.close()


_DOOMED_WORKER = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from reviewbot.sqlite_queue import SqliteJobQueue
    from reviewbot.worker import Worker

    async def main(path: str, marker: str) -> None:
        queue = SqliteJobQueue(pathlib.Path(path), lease_seconds=0.6)

        async def handler(job) -> None:
            pathlib.Path(marker).write_text(job.delivery_id)
            await asyncio.sleep(60)  # "posting the review" when the kill arrives

        await Worker(queue, handler, poll_interval=0.05).run()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_sigkill_mid_job_then_restart_runs_it_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    marker = tmp_path / "started"
    store = SqliteJobQueue(path, lease_seconds=0.6)
    await store.enqueue(review("killed-delivery"))
    process = subprocess.Popen(
        [sys.executable, "-c", _DOOMED_WORKER, str(path), str(marker)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert process.poll() is None, "the worker process died on its own"
            assert time.monotonic() < deadline, "the worker process never claimed the job"
            await asyncio.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    [record] = await store.records("killed-delivery")
    assert record.status is JobStatus.RUNNING  # the dead worker's claim is still recorded

    handler = RecordingHandler()
    worker = Worker(store, handler, retry=FAST, poll_interval=0.05)
    serving = asyncio.create_task(worker.run())
    await handler.wait_for(1)
    await asyncio.sleep(0.7)  # past another lease: a second run would show up now
    await worker.stop(1.0)
    await serving
    assert [job.delivery_id for job in handler.jobs] == ["killed-delivery"]
    [record] = await store.records("killed-delivery")
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    await store.close()


# ---- retries and giving up ------------------------------------------------------------------


async def test_transient_failures_retry_with_backoff_then_succeed(
    queue: SqliteJobQueue, clock: Clock
) -> None:
    store = SqliteJobQueue(queue.path, clock=clock)
    await store.enqueue(review("flaky"))
    policy = RetryPolicy(max_attempts=5, backoff_base=10, backoff_max=1000, jitter=0)
    attempts: list[int] = []

    async def flaky(job: Job) -> None:
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise TransientJobError("502 from GitHub")

    worker = Worker(store, flaky, retry=policy, clock=clock)
    assert await worker.run_until_idle() == 1
    for wait in (10, 20):  # exponential: base, then twice the base
        clock.advance(wait - 0.5)
        assert await worker.run_until_idle() == 0, "retried before its backoff"
        clock.advance(0.5)
        assert await worker.run_until_idle() == 1
    assert attempts == [1, 2, 3]
    [record] = await store.records("flaky")
    assert (record.status, record.attempts, record.last_error) == (JobStatus.DONE, 3, None)
    await store.close()


async def test_transient_failures_give_up_after_the_budget(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("down"))
    given_up: list[tuple[Job, BaseException]] = []

    async def always_down(job: Job) -> None:
        raise TransientJobError("GitHub is down", retry_after=0.01)

    async def give_up(job: Job, error: BaseException) -> None:
        given_up.append((job, error))

    handler = RecordingHandler(always_down)
    worker = Worker(queue, handler, on_give_up=give_up, retry=FAST, poll_interval=0.01)
    serving = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 10
    while not given_up and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await worker.stop(1.0)
    await serving
    assert [job.attempt for job in handler.jobs] == [1, 2, 3]
    [(job, error)] = given_up
    assert job.delivery_id == "down"
    assert isinstance(error, TransientJobError)
    [record] = await queue.records("down")
    assert record.status is JobStatus.FAILED
    assert "GitHub is down" in (record.last_error or "")


@pytest.mark.parametrize(
    "error", [PermanentJobError("PR not found"), ValueError("a bug"), KeyError("number")]
)
async def test_permanent_errors_give_up_at_once_and_the_worker_goes_on(
    queue: SqliteJobQueue, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()  # puts the delivery context on every record
    await queue.enqueue(review("broken", number=1))
    await queue.enqueue(review("fine", number=2))
    given_up: list[str] = []

    def behave(job: Job) -> None:
        if job.delivery_id == "broken":
            raise error

    async def give_up(job: Job, failure: BaseException) -> None:
        assert failure is error
        given_up.append(job.delivery_id)

    handler = RecordingHandler(behave)
    worker = Worker(queue, handler, on_give_up=give_up, retry=FAST)
    assert await worker.run_until_idle() == 2
    assert [job.delivery_id for job in handler.jobs] == ["broken", "fine"]
    assert given_up == ["broken"]
    assert await status_of(queue, "broken") is JobStatus.FAILED
    assert await status_of(queue, "fine") is JobStatus.DONE
    # Logged with the delivery id in the record's context.
    failures = [r for r in caplog.records if "failed permanently" in r.getMessage()]
    assert [record_context(r).delivery_id for r in failures] == ["broken"]


async def test_a_failing_give_up_callback_is_logged_not_fatal(
    queue: SqliteJobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(review("d1"))

    async def broken_callback(job: Job, error: BaseException) -> None:
        raise RuntimeError("could not post the failure note")

    def fail(job: Job) -> None:
        raise PermanentJobError("nope")

    worker = Worker(queue, RecordingHandler(fail), on_give_up=broken_callback, retry=FAST)
    assert await worker.run_until_idle() == 1
    assert await status_of(queue, "d1") is JobStatus.FAILED
    assert any("give-up callback failed" in r.getMessage() for r in caplog.records)


async def test_a_retry_runs_when_due_not_at_the_next_poll(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("d1"))
    policy = RetryPolicy(max_attempts=3, backoff_base=0.05, backoff_max=0.05, jitter=0)

    def first_attempt_fails(job: Job) -> None:
        if job.attempt == 1:
            raise TransientJobError("503")

    handler = RecordingHandler(first_attempt_fails)
    worker = Worker(queue, handler, retry=policy, poll_interval=30)
    serving = asyncio.create_task(worker.run())
    started = time.monotonic()
    await handler.wait_for(2, timeout=5)
    elapsed = time.monotonic() - started
    await worker.stop(1.0)
    await serving
    assert 0.05 <= elapsed < 2  # woke for the retry, not after the 30 s poll


# ---- stopping -------------------------------------------------------------------------------


async def test_stop_releases_a_running_job_without_counting_it(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("long"))
    started = asyncio.Event()

    async def never_ends(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = Worker(queue, never_ends, retry=FAST, poll_interval=0.01)
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await worker.stop(timeout=0.05)
    await serving
    [record] = await queue.records("long")
    assert (record.status, record.attempts) == (JobStatus.PENDING, 0)
    handler = RecordingHandler()
    assert await Worker(queue, handler, retry=FAST).run_until_idle() == 1
    assert handler.jobs[0].attempt == 1


async def test_stop_before_start_returns_at_once(queue: SqliteJobQueue) -> None:
    worker = Worker(queue, RecordingHandler())
    await worker.stop()
    await asyncio.wait_for(worker.run(), 1)


# ---- dispatch -------------------------------------------------------------------------------


async def test_handlers_by_kind(queue: SqliteJobQueue) -> None:
    reviews = RecordingHandler()
    dispatch = handlers_by_kind({"review": reviews})
    await dispatch(review("d1"))
    assert len(reviews.jobs) == 1
    with pytest.raises(PermanentJobError, match="snapshots"):
        await dispatch(Job("snapshots", "d2", "o", "r", None, "a" * 40, "workflow_run"))
