"""The SQLite job queue and the worker: dedup, coalescing, retries, leases, crash recovery."""

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
from typing import Any

import pytest

from reviewbot.jobs import (
    EnqueueStatus,
    Job,
    JobStatus,
    PermanentJobError,
    QueueError,
    RetryPolicy,
    SqliteJobQueue,
    TransientJobError,
    Worker,
    handlers_by_kind,
)
from reviewbot.logs import install_redaction, record_context, uninstall_redaction
from tests.helpers_service import RecordingHandler

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, jitter=0)


@pytest.fixture(autouse=True)
def _no_logging_state_leaks() -> Iterator[None]:
    # create_app installs process-wide log redaction; leave other test modules a clean slate.
    yield
    uninstall_redaction()


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


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteJobQueue]:
    store = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def status_of(queue: SqliteJobQueue, delivery: str) -> JobStatus:
    [record] = await queue.records(delivery)
    return record.status


# ---- storing and claiming -----------------------------------------------------------------------


async def test_enqueue_claim_complete(queue: SqliteJobQueue) -> None:
    job = review("d1", note="hi")
    result = await queue.enqueue(job)
    assert result.status is EnqueueStatus.NEW
    assert await queue.depth() == 1
    claimed = await queue.claim("w1")
    assert claimed is not None
    assert claimed.id == result.job_id
    assert (claimed.attempt, claimed.claimed_by) == (1, "w1")
    assert claimed.extra == {"note": "hi"}
    assert (claimed.kind, claimed.owner, claimed.repo, claimed.number, claimed.head_sha) == (
        job.kind,
        job.owner,
        job.repo,
        job.number,
        job.head_sha,
    )
    assert await queue.claim("w2") is None  # claimed once only
    assert not await queue.is_done("d1")
    await queue.complete(claimed)
    assert await queue.is_done("d1")
    assert await queue.depth() == 0


async def test_job_extra_must_be_json(queue: SqliteJobQueue) -> None:
    with pytest.raises(TypeError):
        await queue.enqueue(review("d1", thing=object()))
    assert await queue.records("d1") == []


async def test_unknown_delivery_is_not_done(queue: SqliteJobQueue) -> None:
    assert not await queue.is_done("never-seen")


@pytest.mark.parametrize("stage", ["pending", "running", "done"])
async def test_redelivery_is_a_duplicate_at_every_stage(queue: SqliteJobQueue, stage: str) -> None:
    await queue.enqueue(review("d1"))
    if stage != "pending":
        claimed = await queue.claim("w1")
        assert claimed is not None
        if stage == "done":
            await queue.complete(claimed)
    again = await queue.enqueue(review("d1", head="b" * 40))
    assert again.status is EnqueueStatus.DUPLICATE
    assert len(await queue.records("d1")) == 1
    assert (await queue.records("d1"))[0].job.head_sha == "a" * 40


async def test_redelivery_of_a_failed_delivery_runs_it_again(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("d1"))
    claimed = await queue.claim("w1")
    assert claimed is not None
    await queue.fail(claimed, PermanentJobError("boom"), retry_at=None)
    assert await status_of(queue, "d1") is JobStatus.FAILED
    again = await queue.enqueue(review("d1"))
    assert again.status is EnqueueStatus.NEW
    rerun = await queue.claim("w1")
    assert rerun is not None
    assert rerun.attempt == 1  # a fresh budget


async def test_one_delivery_may_make_one_job_per_kind(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("d1"))
    snapshot = Job("snapshots", "d1", "octo", "hello", None, "a" * 40, "workflow_run")
    assert (await queue.enqueue(snapshot)).status is EnqueueStatus.NEW
    assert len(await queue.records("d1")) == 2


# ---- coalescing ---------------------------------------------------------------------------------


async def test_newer_pushes_supersede_queued_ones(queue: SqliteJobQueue) -> None:
    results = [await queue.enqueue(review(f"p{i}", head=str(i) * 40)) for i in range(3)]
    assert [r.status for r in results] == [
        EnqueueStatus.NEW,
        EnqueueStatus.COALESCED,
        EnqueueStatus.COALESCED,
    ]
    assert results[2].superseded == ("p1",)
    assert await queue.depth() == 1
    claimed = await queue.claim("w")
    assert claimed is not None
    assert claimed.head_sha == "2" * 40
    assert claimed.extra["coalesced_deliveries"] == ["p0", "p1"]
    # Each push was superseded by the next one.
    for delivery, successor in (("p0", results[1]), ("p1", results[2])):
        [record] = await queue.records(delivery)
        assert record.status is JobStatus.SUPERSEDED
        assert record.superseded_by == successor.job_id
    # A superseded delivery counts as handled: its effect is the newer review.
    assert await queue.is_done("p0")
    assert (await queue.enqueue(review("p0"))).status is EnqueueStatus.DUPLICATE


async def test_coalescing_is_per_pull_request(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("a", number=1))
    await queue.enqueue(review("b", number=2))
    await queue.enqueue(review("c", number=1, repo="other"))
    await queue.enqueue(review("d", number=1, owner="someone-else"))
    assert await queue.depth() == 4
    # Owner and repository names are case-insensitive on GitHub.
    result = await queue.enqueue(review("e", number=1, owner="OCTO", repo="Hello"))
    assert result.superseded == ("a",)


async def test_snapshot_jobs_are_not_coalesced(queue: SqliteJobQueue) -> None:
    for delivery in ("s1", "s2"):
        job = Job("snapshots", delivery, "octo", "hello", None, "a" * 40, "workflow_run")
        assert (await queue.enqueue(job)).status is EnqueueStatus.NEW
    assert await queue.depth() == 2


@pytest.mark.parametrize(
    ("triggers", "survivor"),
    [
        (["command", "auto"], "command"),
        (["requested", "auto", "auto"], "requested"),
        (["auto", "requested"], "requested"),
        (["requested", "command"], "command"),
        (["command", "requested", "auto"], "requested"),
        (["auto", "auto"], "auto"),
    ],
)
async def test_explicit_requests_survive_coalescing(
    queue: SqliteJobQueue, triggers: list[str], survivor: str
) -> None:
    for i, trigger in enumerate(triggers):
        await queue.enqueue(review(f"d{i}", head=str(i) * 40, trigger=trigger))
    claimed = await queue.claim("w")
    assert claimed is not None
    assert claimed.head_sha == str(len(triggers) - 1) * 40  # always the newest head
    assert claimed.trigger == survivor


async def test_running_job_is_not_superseded_and_its_pr_waits(queue: SqliteJobQueue) -> None:
    await queue.enqueue(review("old", head="a" * 40))
    running = await queue.claim("w1")
    assert running is not None
    newer = await queue.enqueue(review("new", head="b" * 40))
    assert newer.status is EnqueueStatus.NEW
    await queue.enqueue(review("elsewhere", number=8))
    # Another worker may take the other PR's job, not the newer job of the running PR.
    other = await queue.claim("w2")
    assert other is not None
    assert other.delivery_id == "elsewhere"
    assert await queue.claim("w2") is None
    await queue.complete(running)
    waiting = await queue.claim("w2")
    assert waiting is not None
    assert waiting.delivery_id == "new"


# ---- leases and crash recovery -------------------------------------------------------------------


async def test_expired_lease_is_run_again_by_a_new_instance(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobQueue(path, lease_seconds=60, clock=clock)
    await first.enqueue(review("d1"))
    assert await first.claim("dead-worker") is not None
    await first.close()  # the worker "died" without completing

    second = SqliteJobQueue(path, lease_seconds=60, clock=clock)
    handler = RecordingHandler()
    worker = Worker(second, handler, retry=FAST, clock=clock)
    assert await worker.run_until_idle() == 0  # lease still valid: not stolen
    clock.advance(61)
    assert await worker.run_until_idle() == 1
    assert await worker.run_until_idle() == 0
    [job] = handler.jobs
    assert job.attempt == 2
    [record] = await second.records("d1")
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    await second.close()


async def test_expired_job_folds_into_a_newer_queued_one(queue: SqliteJobQueue) -> None:
    clock = Clock()
    store = SqliteJobQueue(queue.path, lease_seconds=10, clock=clock)
    await store.enqueue(review("old", head="a" * 40))
    assert await store.claim("dead") is not None
    await store.enqueue(review("new", head="b" * 40))
    clock.advance(11)
    claimed = await store.claim("alive")
    assert claimed is not None
    assert claimed.delivery_id == "new"
    assert await status_of(store, "old") is JobStatus.SUPERSEDED
    await store.close()


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


async def test_heartbeat_reports_a_lost_lease(queue: SqliteJobQueue, clock: Clock) -> None:
    store = SqliteJobQueue(queue.path, lease_seconds=5, clock=clock)
    await store.enqueue(review("d1"))
    mine = await store.claim("w1")
    assert mine is not None
    assert await store.heartbeat(mine)
    clock.advance(6)
    theirs = await store.claim("w2")
    assert theirs is not None
    assert not await store.heartbeat(mine)
    # The old holder's outcome is not recorded over the new holder's claim.
    await store.complete(mine)
    await store.fail(mine, PermanentJobError("late"), retry_at=None)
    [record] = await store.records("d1")
    assert (record.status, record.last_error) == (JobStatus.RUNNING, None)
    await store.complete(theirs)
    assert await store.is_done("d1")
    await store.close()


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
    from reviewbot.jobs import RetryPolicy, SqliteJobQueue, Worker

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


async def test_two_stores_on_one_file_claim_each_job_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    stores = [SqliteJobQueue(path), SqliteJobQueue(path)]
    for number in range(30):
        await stores[number % 2].enqueue(review(f"d{number}", number=number))
    handler = RecordingHandler(lambda job: asyncio.sleep(0.001))
    workers = [Worker(store, handler, concurrency=3, poll_interval=0.02) for store in stores]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    await handler.wait_for(30)
    for worker in workers:
        await worker.stop(5.0)
    await asyncio.gather(*tasks)
    assert sorted(job.delivery_id for job in handler.jobs) == sorted(f"d{n}" for n in range(30))
    for store in stores:
        await store.close()


# ---- retries and giving up -----------------------------------------------------------------------


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


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=2, backoff_max=10, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
    assert policy.delay(1, retry_after=30) == 30  # GitHub's Retry-After wins when longer
    assert policy.delay(1, retry_after=10**6) == 3600  # but never more than an hour
    jittery = RetryPolicy(backoff_base=10, backoff_max=100, jitter=0.1)
    assert all(10 <= jittery.delay(1) <= 11 for _ in range(50))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_base=10, backoff_max=5)


# ---- stopping ----------------------------------------------------------------------------------


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


# ---- odds and ends -------------------------------------------------------------------------------


async def test_handlers_by_kind(queue: SqliteJobQueue) -> None:
    reviews = RecordingHandler()
    dispatch = handlers_by_kind({"review": reviews})
    await dispatch(review("d1"))
    assert len(reviews.jobs) == 1
    with pytest.raises(PermanentJobError, match="snapshots"):
        await dispatch(Job("snapshots", "d2", "o", "r", None, "a" * 40, "workflow_run"))


async def test_prune_forgets_old_finished_jobs(tmp_path: Path, clock: Clock) -> None:
    store = SqliteJobQueue(tmp_path / "jobs.sqlite3", retention_seconds=100, clock=clock)
    await store.enqueue(review("finished", number=1))
    await store.enqueue(review("waiting", number=2))
    claimed = await store.claim("w")
    assert claimed is not None
    await store.complete(claimed)
    clock.advance(101)
    assert await store.prune() == 1
    assert await store.records("finished") == []
    assert len(await store.records("waiting")) == 1
    await store.close()


async def test_unusable_store_raises_queue_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = SqliteJobQueue(blocker / "jobs.sqlite3")
    with pytest.raises(QueueError):
        await store.enqueue(review("d1"))
    with pytest.raises(QueueError):
        await store.ping()
    await store.close()
    with pytest.raises(QueueError, match="closed"):
        await store.depth()


def test_job_json_round_trip() -> None:
    job = review("d1", comment_id=5, args="x")
    restored = Job.from_json(job.to_json(), id=3, attempt=2, claimed_by="w")
    assert restored == Job(**{**job.__dict__, "id": 3, "attempt": 2, "claimed_by": "w"})


async def test_concurrent_enqueues_share_transactions_and_still_dedup(
    queue: SqliteJobQueue,
) -> None:
    jobs = [review(f"d{n % 20}", number=n % 20) for n in range(60)]  # each delivery thrice
    results = await asyncio.gather(*(queue.enqueue(job) for job in jobs))
    statuses = [result.status for result in results]
    assert statuses.count(EnqueueStatus.NEW) == 20
    assert statuses.count(EnqueueStatus.DUPLICATE) == 40
    for n in range(20):
        assert len(await queue.records(f"d{n}")) == 1
    assert await queue.depth() == 20


async def test_store_failure_reaches_every_waiting_enqueue(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SqliteJobQueue(blocker / "jobs.sqlite3")
    outcomes = await asyncio.gather(
        *(store.enqueue(review(f"d{n}", number=n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, QueueError) for outcome in outcomes)
    await store.close()


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
