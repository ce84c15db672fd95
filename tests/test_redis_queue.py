"""The Redis queue against a real Redis: the guarantees across processes, crashes, outages.

``make test`` starts a Redis on loopback (scripts/ensure-redis.sh); these tests fail, never
skip, when there is none. Each test owns a random key prefix and deletes its keys afterwards,
so runs on one server do not see each other.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from fastapi import FastAPI

from reviewbot.app import create_app, make_queue, run_worker, runs_worker_in_server
from reviewbot.jobs import (
    EnqueueStatus,
    Job,
    JobStatus,
    PermanentJobError,
    QueueError,
    RetryPolicy,
    TransientJobError,
)
from reviewbot.logs import uninstall_redaction
from reviewbot.redis_queue import RedisJobQueue, display_url
from reviewbot.settings import Settings
from reviewbot.sqlite_queue import SqliteJobQueue
from reviewbot.worker import Worker
from tests.helpers_jobs import FAST, Clock, review, snapshots, status_of
from tests.helpers_service import RecordingHandler, deliver, make_settings, pr_payload, running

pytestmark = pytest.mark.redis

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6399/3"
LEASE = 0.6  # short leases keep crash-recovery tests fast

QueueFactory = Callable[..., RedisJobQueue]


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REVIEWBOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"no Redis answers at {display_url(url)} ({error}); the Redis tests need one: "
            "run `make redis` (scripts/ensure-redis.sh) or set REVIEWBOT_TEST_REDIS_URL",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    mine = f"reviewbot-test:{uuid.uuid4().hex}:"
    yield mine
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=mine + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def queues(redis_url: str, prefix: str) -> AsyncIterator[QueueFactory]:
    """Queue instances on the test's prefix, each with its own connections ("processes")."""
    made: list[RedisJobQueue] = []

    def factory(**options: Any) -> RedisJobQueue:
        options.setdefault("client_name", f"reviewbot-test-{prefix.split(':')[1]}")
        store = RedisJobQueue(redis_url, prefix=prefix, **options)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
def queue(queues: QueueFactory) -> RedisJobQueue:
    return queues()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _no_logging_state_leaks() -> Iterator[None]:
    # create_app installs process-wide log redaction; leave other test modules a clean slate.
    yield
    uninstall_redaction()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def working(*workers: Worker, grace: float = 2.0) -> AsyncIterator[None]:
    """Run the workers for the block; always stop them, even when an assertion failed."""
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop(grace)
        await asyncio.gather(*tasks)


async def wait_until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the workers did not finish in time"
        await asyncio.sleep(0.01)


# ---- one job per delivery, across servers ---------------------------------------------------


async def test_a_job_enqueued_by_one_server_is_claimed_by_another(
    queues: QueueFactory,
) -> None:
    server, worker_side = queues(), queues()
    job = review("d1", note="hi")
    result = await server.enqueue(job)
    assert result.status is EnqueueStatus.NEW
    assert await worker_side.depth() == 1
    claimed = await worker_side.claim("w1")
    assert claimed is not None
    assert (claimed.id, claimed.attempt, claimed.claimed_by) == (result.job_id, 1, "w1")
    assert claimed.extra == {"note": "hi"}
    assert dict(claimed.__dict__, id=None, attempt=0, claimed_by=None) == job.__dict__
    assert await server.claim("w2") is None  # claimed once only
    assert not await server.is_done("d1")
    await worker_side.complete(claimed)
    assert await server.is_done("d1")
    assert await server.depth() == 0


async def test_job_extra_must_be_json(queue: RedisJobQueue) -> None:
    with pytest.raises(TypeError):
        await queue.enqueue(review("d1", thing=object()))
    assert await queue.records("d1") == []
    assert not await queue.is_done("d1")


@pytest.mark.parametrize("stage", ["pending", "running", "done", "superseded"])
async def test_redelivery_to_another_server_is_a_duplicate_at_every_stage(
    queues: QueueFactory, stage: str
) -> None:
    first, second = queues(), queues()
    original = await first.enqueue(review("d1"))
    if stage == "superseded":
        await first.enqueue(review("d2", head="c" * 40))
    elif stage != "pending":
        claimed = await first.claim("w1")
        assert claimed is not None
        if stage == "done":
            await first.complete(claimed)
    again = await second.enqueue(review("d1", head="b" * 40))
    assert (again.status, again.job_id) == (EnqueueStatus.DUPLICATE, original.job_id)
    [record] = await second.records("d1")
    assert record.status.value == stage
    assert record.job.head_sha == "a" * 40  # the redelivery changed nothing


async def test_redelivery_of_a_failed_delivery_runs_it_again(queues: QueueFactory) -> None:
    first, second = queues(), queues()
    await first.enqueue(review("d1"))
    claimed = await first.claim("w1")
    assert claimed is not None
    await first.fail(claimed, PermanentJobError("boom"), retry_at=None)
    [record] = await second.records("d1")
    assert (record.status, record.last_error) == (JobStatus.FAILED, "PermanentJobError: boom")
    again = await second.enqueue(review("d1"))
    assert again.status is EnqueueStatus.NEW
    assert again.job_id == claimed.id
    rerun = await second.claim("w2")
    assert rerun is not None
    assert rerun.attempt == 1  # a fresh budget
    assert (await second.enqueue(review("d1"))).status is EnqueueStatus.DUPLICATE


async def test_concurrent_redeliveries_from_two_servers_make_one_job_each(
    queues: QueueFactory,
) -> None:
    servers = [queues(), queues()]
    jobs = [review(f"d{n % 20}", number=n % 20) for n in range(60)]  # each delivery thrice
    results = await asyncio.gather(*(servers[n % 2].enqueue(job) for n, job in enumerate(jobs)))
    statuses = [result.status for result in results]
    assert statuses.count(EnqueueStatus.NEW) == 20
    assert statuses.count(EnqueueStatus.DUPLICATE) == 40
    for n in range(20):
        assert len(await servers[0].records(f"d{n}")) == 1
    assert await servers[1].depth() == 20


async def test_one_delivery_may_make_one_job_per_kind(queue: RedisJobQueue) -> None:
    await queue.enqueue(review("d1"))
    assert (await queue.enqueue(snapshots("d1"))).status is EnqueueStatus.NEW
    assert [r.job.kind for r in await queue.records("d1")] == ["review", "snapshots"]
    assert (await queue.enqueue(snapshots("d1"))).status is EnqueueStatus.DUPLICATE


# ---- coalescing per pull request ------------------------------------------------------------


async def test_newer_pushes_from_any_server_supersede_queued_ones(queues: QueueFactory) -> None:
    servers = [queues(), queues(), queues()]
    results = [await servers[i].enqueue(review(f"p{i}", head=str(i) * 40)) for i in range(3)]
    assert [r.status for r in results] == [
        EnqueueStatus.NEW,
        EnqueueStatus.COALESCED,
        EnqueueStatus.COALESCED,
    ]
    assert results[2].superseded == ("p1",)
    assert await servers[0].depth() == 1
    claimed = await servers[1].claim("w")
    assert claimed is not None
    assert claimed.head_sha == "2" * 40  # the newest head wins
    assert claimed.extra["coalesced_deliveries"] == ["p0", "p1"]
    for delivery, successor in (("p0", results[1]), ("p1", results[2])):
        [record] = await servers[2].records(delivery)
        assert record.status is JobStatus.SUPERSEDED
        assert record.superseded_by == successor.job_id
    assert await servers[0].is_done("p0")  # its effect is the newer review
    assert (await servers[0].enqueue(review("p0"))).status is EnqueueStatus.DUPLICATE


async def test_concurrent_pushes_to_one_pr_leave_only_the_newest(queues: QueueFactory) -> None:
    servers = [queues(), queues()]
    deliveries = [f"push{n}" for n in range(30)]
    results = await asyncio.gather(
        *(
            servers[n % 2].enqueue(review(delivery, head=f"{n:040d}"))
            for n, delivery in enumerate(deliveries)
        )
    )
    newest = max(results, key=lambda result: result.job_id)
    assert await servers[0].depth() == 1
    claimed = await servers[1].claim("w")
    assert claimed is not None
    assert claimed.id == newest.job_id
    survivor = deliveries[results.index(newest)]
    assert claimed.delivery_id == survivor
    # Every other push is accounted for, folded into the survivor, none lost or run.
    assert sorted([*claimed.extra["coalesced_deliveries"], survivor]) == sorted(deliveries)
    for delivery in deliveries:
        [record] = await servers[0].records(delivery)
        expected = JobStatus.RUNNING if delivery == survivor else JobStatus.SUPERSEDED
        assert record.status is expected


async def test_coalescing_is_per_pull_request_and_only_for_reviews(queue: RedisJobQueue) -> None:
    await queue.enqueue(review("a", number=1))
    await queue.enqueue(review("b", number=2))
    await queue.enqueue(review("c", number=1, repo="other"))
    await queue.enqueue(review("d", number=1, owner="someone-else"))
    for delivery in ("s1", "s2"):
        assert (await queue.enqueue(snapshots(delivery))).status is EnqueueStatus.NEW
    assert await queue.depth() == 6
    # Owner and repository names are case-insensitive on GitHub.
    result = await queue.enqueue(review("e", number=1, owner="OCTO", repo="Hello"))
    assert result.superseded == ("a",)
    assert await queue.depth() == 6


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
    queues: QueueFactory, triggers: list[str], survivor: str
) -> None:
    servers = [queues(), queues()]
    for i, trigger in enumerate(triggers):
        await servers[i % 2].enqueue(review(f"d{i}", head=str(i) * 40, trigger=trigger))
    claimed = await servers[0].claim("w")
    assert claimed is not None
    assert claimed.head_sha == str(len(triggers) - 1) * 40  # always the newest head
    assert claimed.trigger == survivor
    [record] = await servers[1].records(claimed.delivery_id)
    assert record.job.trigger == survivor


async def test_running_job_is_not_superseded_and_its_pr_waits(queues: QueueFactory) -> None:
    first, second = queues(), queues()
    await first.enqueue(review("old", head="a" * 40))
    running_job = await first.claim("w1")
    assert running_job is not None
    newer = await second.enqueue(review("new", head="b" * 40))
    assert newer.status is EnqueueStatus.NEW
    await second.enqueue(review("elsewhere", number=8))
    # Another worker may take the other PR's job, not the newer job of the running PR.
    other = await second.claim("w2")
    assert other is not None
    assert other.delivery_id == "elsewhere"
    assert await second.claim("w2") is None
    await first.complete(running_job)
    waiting = await second.claim("w2")
    assert waiting is not None
    assert waiting.delivery_id == "new"


async def test_jobs_of_one_pr_never_run_side_by_side_across_workers(
    queues: QueueFactory,
) -> None:
    server = queues()
    active: set[int] = set()
    overlaps: list[int] = []

    async def handler(job: Job) -> None:
        assert job.number is not None
        if job.number in active:
            overlaps.append(job.number)
        active.add(job.number)
        await asyncio.sleep(0.05)
        active.discard(job.number)

    recording = RecordingHandler(handler)
    workers = [
        Worker(queues(lease_seconds=5), recording, concurrency=3, poll_interval=0.05)
        for _ in range(2)
    ]
    async with working(*workers):
        # Pushes to three PRs while their earlier jobs run: each PR's jobs run one at a time.
        for round_ in range(4):
            for number in (1, 2, 3):
                await server.enqueue(
                    review(f"r{round_}-{number}", number=number, head=f"{round_}" * 40)
                )
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 10
        while await server.depth() or active:
            assert time.monotonic() < deadline, "jobs were left in the queue"
            await asyncio.sleep(0.02)
    assert overlaps == []
    ran = {job.delivery_id for job in recording.jobs}
    for number in (1, 2, 3):
        assert f"r3-{number}" in ran  # the newest push of every PR was reviewed
        for round_ in range(4):
            status = await status_of(server, f"r{round_}-{number}")
            assert status in (JobStatus.DONE, JobStatus.SUPERSEDED)


# ---- many workers, crashes and leases ----------------------------------------------------------


async def test_two_workers_process_every_job_exactly_once(queues: QueueFactory) -> None:
    servers = [queues(), queues()]
    count = 40
    for n in range(count):
        await servers[n % 2].enqueue(review(f"d{n}", number=n))
    handler = RecordingHandler(lambda job: asyncio.sleep(0.002))
    workers = [Worker(queues(), handler, concurrency=3, poll_interval=0.05) for _ in range(2)]
    async with working(*workers):
        await handler.wait_for(count)
    assert sorted(job.delivery_id for job in handler.jobs) == sorted(f"d{n}" for n in range(count))
    assert {job.claimed_by for job in handler.jobs} <= {w.worker_id for w in workers}
    for n in range(count):
        assert await servers[0].is_done(f"d{n}")


async def test_an_idle_worker_wakes_when_another_server_enqueues(queues: QueueFactory) -> None:
    handler = RecordingHandler()
    # Without a wake-up it would claim again only after 2.5 s (half the command timeout).
    worker = Worker(queues(command_timeout=5.0), handler, poll_interval=30)
    async with working(worker):
        await asyncio.sleep(0.2)  # idle, blocked on the wake-up list
        started = time.monotonic()
        await queues().enqueue(review("d1"))
        await handler.wait_for(1, timeout=5)
        assert time.monotonic() - started < 0.5


async def test_expired_lease_is_run_again_by_another_instance(
    queues: QueueFactory, clock: Clock
) -> None:
    dead = queues(lease_seconds=60, clock=clock)
    await dead.enqueue(review("d1"))
    assert await dead.claim("dead-worker") is not None
    await dead.close()  # the worker "died" without completing

    alive = queues(lease_seconds=60, clock=clock)
    handler = RecordingHandler()
    worker = Worker(alive, handler, retry=FAST, clock=clock)
    assert await worker.run_until_idle() == 0  # lease still valid: not stolen
    clock.advance(61)
    assert await worker.run_until_idle() == 1
    assert await worker.run_until_idle() == 0
    [job] = handler.jobs
    assert job.attempt == 2
    [record] = await alive.records("d1")
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)


async def test_expired_job_folds_into_a_newer_queued_one(
    queues: QueueFactory, clock: Clock
) -> None:
    store = queues(lease_seconds=10, clock=clock)
    await store.enqueue(review("old", head="a" * 40))
    assert await store.claim("dead") is not None
    await store.enqueue(review("new", head="b" * 40))
    clock.advance(11)
    claimed = await queues(lease_seconds=10, clock=clock).claim("alive")
    assert claimed is not None
    assert claimed.delivery_id == "new"
    assert claimed.extra["coalesced_deliveries"] == ["old"]
    assert await status_of(store, "old") is JobStatus.SUPERSEDED


async def test_heartbeat_keeps_the_lease_and_reports_losing_it(
    queues: QueueFactory, clock: Clock
) -> None:
    store = queues(lease_seconds=5, clock=clock)
    thief = queues(lease_seconds=5, clock=clock)
    await store.enqueue(review("d1"))
    mine = await store.claim("w1")
    assert mine is not None
    for _ in range(3):  # renewed before each expiry: nobody else gets it
        clock.advance(4)
        assert await store.heartbeat(mine)
        assert await thief.claim("w2") is None
    clock.advance(6)
    theirs = await thief.claim("w2")
    assert theirs is not None
    assert not await store.heartbeat(mine)
    # The old holder's outcome is not recorded over the new holder's claim.
    await store.complete(mine)
    await store.fail(mine, PermanentJobError("late"), retry_at=None)
    await store.release(mine)
    [record] = await store.records("d1")
    assert (record.status, record.attempts, record.last_error) == (JobStatus.RUNNING, 2, None)
    await thief.complete(theirs)
    assert await store.is_done("d1")


async def test_a_job_that_keeps_killing_its_worker_gives_up(
    queues: QueueFactory, clock: Clock
) -> None:
    store = queues(lease_seconds=5, clock=clock)
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


_WORKER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    import reviewbot.redis_queue
    from reviewbot.app import work
    from reviewbot.settings import Settings

    url, prefix, log, mode, lease, data_dir = sys.argv[1:7]
    reviewbot.redis_queue.DEFAULT_PREFIX = prefix  # this test's keys only

    async def handler(job) -> None:
        with open(log, "a") as out:  # one line per run: a duplicate would show
            out.write(job.delivery_id + "\\n")
        await asyncio.sleep(60 if mode == "hang" else 0.02)

    settings = Settings(
        queue_url=url, job_lease_seconds=float(lease), worker_concurrency=3, data_dir=data_dir
    )
    work(settings, handler)  # `reviewbot worker`: runs until SIGTERM
    """
)


def start_worker_process(
    redis_url: str, prefix: str, tmp_path: Path, mode: str, lease: float
) -> subprocess.Popen[bytes]:
    log = tmp_path / "runs.log"
    command = [_WORKER_PROCESS, redis_url, prefix, str(log), mode, str(lease), str(tmp_path)]
    return subprocess.Popen([sys.executable, "-c", *command], cwd=REPO_ROOT)


def runs_in(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_a_worker_process_and_an_in_process_worker_share_the_jobs(
    redis_url: str, prefix: str, queues: QueueFactory, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    server = queues()
    count = 60
    for n in range(count):
        await server.enqueue(review(f"d{n}", number=n))
    process = start_worker_process(redis_url, prefix, tmp_path, "work", 5.0)
    try:
        deadline = time.monotonic() + 20
        while not runs_in(log):  # the process is up and working (its SIGTERM handler too)
            assert process.poll() is None, "the worker process died"
            assert time.monotonic() < deadline, "the worker process never took a job"
            await asyncio.sleep(0.01)
        handler = RecordingHandler(lambda job: asyncio.sleep(0.02))
        async with working(Worker(queues(), handler, concurrency=3, poll_interval=0.05)):
            while len(handler.jobs) + len(runs_in(log)) < count:
                assert process.poll() is None, "the worker process died"
                assert time.monotonic() < deadline, "jobs were lost"
                await asyncio.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0  # stopped gracefully
    mine = [job.delivery_id for job in handler.jobs]
    theirs = runs_in(log)
    assert mine and theirs, "both workers take jobs"
    assert sorted(mine + theirs) == sorted(f"d{n}" for n in range(count))  # none twice, none lost
    assert await server.depth() == 0
    for n in range(count):
        assert await server.is_done(f"d{n}")


async def test_sigkill_mid_job_then_another_worker_runs_it_exactly_once(
    redis_url: str, prefix: str, queues: QueueFactory, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    server = queues(lease_seconds=LEASE)
    await server.enqueue(review("killed-delivery"))
    process = start_worker_process(redis_url, prefix, tmp_path, "hang", LEASE)
    try:
        deadline = time.monotonic() + 20
        while not runs_in(log):
            assert process.poll() is None, "the worker process died on its own"
            assert time.monotonic() < deadline, "the worker process never claimed the job"
            await asyncio.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    [record] = await server.records("killed-delivery")
    assert record.status is JobStatus.RUNNING  # the dead worker's claim is still recorded

    handler = RecordingHandler(lambda job: asyncio.sleep(0.05))
    workers = [Worker(queues(lease_seconds=LEASE), handler, poll_interval=0.05) for _ in range(2)]
    async with working(*workers):
        await handler.wait_for(1)
        await asyncio.sleep(LEASE + 0.3)  # past another lease: a second run would show up now
    assert [job.delivery_id for job in handler.jobs] == ["killed-delivery"]
    assert runs_in(log) == ["killed-delivery"]
    [record] = await server.records("killed-delivery")
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)


# ---- retries and giving up ---------------------------------------------------------------------


async def test_transient_failures_retry_with_backoff_then_succeed(
    queues: QueueFactory, clock: Clock
) -> None:
    store = queues(clock=clock)
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


async def test_transient_failures_give_up_after_the_budget(queues: QueueFactory) -> None:
    await queues().enqueue(review("down"))
    given_up: list[tuple[Job, BaseException]] = []

    async def always_down(job: Job) -> None:
        raise TransientJobError("GitHub is down", retry_after=0.01)

    async def give_up(job: Job, error: BaseException) -> None:
        given_up.append((job, error))

    handler = RecordingHandler(always_down)
    worker = Worker(queues(), handler, on_give_up=give_up, retry=FAST, poll_interval=0.05)
    async with working(worker):
        await wait_until(lambda: bool(given_up))
    assert [job.attempt for job in handler.jobs] == [1, 2, 3]
    [(job, error)] = given_up
    assert job.delivery_id == "down"
    assert isinstance(error, TransientJobError)
    [record] = await queues().records("down")
    assert record.status is JobStatus.FAILED
    assert "GitHub is down" in (record.last_error or "")


async def test_a_newer_push_replaces_a_job_waiting_to_retry(queues: QueueFactory) -> None:
    store = queues()
    await store.enqueue(review("first", head="a" * 40))
    claimed = await store.claim("w")
    assert claimed is not None
    await store.enqueue(review("second", head="b" * 40))  # waits: the PR is running
    await store.fail(claimed, TransientJobError("502"), retry_at=time.time() + 3600)
    assert await status_of(store, "first") is JobStatus.SUPERSEDED
    retried = await store.claim("w")
    assert retried is not None
    assert (retried.delivery_id, retried.extra["coalesced_deliveries"]) == ("second", ["first"])


async def test_stop_releases_a_running_job_without_counting_it(queues: QueueFactory) -> None:
    store = queues()
    await store.enqueue(review("long"))
    started = asyncio.Event()

    async def never_ends(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = Worker(store, never_ends, retry=FAST, poll_interval=0.05)
    async with working(worker, grace=0.05):
        await asyncio.wait_for(started.wait(), 5)
    [record] = await store.records("long")
    assert (record.status, record.attempts) == (JobStatus.PENDING, 0)
    handler = RecordingHandler()
    assert await Worker(queues(), handler, retry=FAST).run_until_idle() == 1
    assert handler.jobs[0].attempt == 1


# ---- retention, outages, dropped connections -------------------------------------------------


async def test_finished_jobs_expire_after_the_retention_period(
    queues: QueueFactory, redis_url: str, prefix: str
) -> None:
    store = queues(retention_seconds=3600)
    await store.enqueue(review("done", number=1))
    await store.enqueue(review("folded", number=2))
    await store.enqueue(review("waiting", number=2))
    await store.enqueue(review("failed", number=3))
    first = await store.claim("w")
    assert first is not None and first.delivery_id == "done"
    await store.complete(first)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:

        def ttls(delivery: str) -> list[int]:
            job_id = client.get(f"{prefix}dedup:{delivery}:review")
            assert job_id is not None
            return [
                cast(int, client.pttl(f"{prefix}dedup:{delivery}:review")),
                cast(int, client.pttl(f"{prefix}job:{job_id}")),
            ]

        for delivery in ("done", "folded"):
            assert all(0 < ttl <= 3_600_000 for ttl in ttls(delivery)), delivery
        assert ttls("waiting") == [-1, -1]  # queued work never expires
        failing = await store.claim("w")
        assert failing is not None and failing.delivery_id == "waiting"
        await store.fail(failing, PermanentJobError("x"), retry_at=None)
        assert all(ttl > 0 for ttl in ttls("waiting"))
        assert (await store.enqueue(review("waiting", number=2))).status is EnqueueStatus.NEW
        assert ttls("waiting") == [-1, -1]  # rerun: kept again until it finishes
    finally:
        client.close()
    assert await store.prune() == 0  # nothing for the process to do


async def test_dropped_connections_and_a_flushed_script_cache_are_survived(
    queues: QueueFactory, redis_url: str
) -> None:
    name = f"reviewbot-drop-{uuid.uuid4().hex[:8]}"
    store = queues(client_name=name)
    await asyncio.gather(*(store.enqueue(review(f"before{n}", number=n)) for n in range(3)))
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # What a Redis restart does to a client: its connections die, its scripts are gone.
        clients = cast(list[dict[str, str]], admin.client_list())
        mine = [client["id"] for client in clients if client["name"] == name]
        assert mine, "the queue's connections carry its client name"
        for client_id in mine:
            admin.client_kill_filter(_id=client_id)
        admin.script_flush()
    finally:
        admin.close()
    results = await asyncio.gather(
        *(store.enqueue(review(f"after{n}", number=10 + n)) for n in range(3))
    )
    assert [result.status for result in results] == [EnqueueStatus.NEW] * 3
    assert await store.depth() == 6


async def test_unreachable_redis_fails_fast_with_queue_error() -> None:
    store = RedisJobQueue(f"redis://:hunter2@127.0.0.1:{closed_port()}/0", connect_timeout=1.0)
    await store.open()  # no network: a server starts while Redis is down
    started = time.monotonic()
    for operation in (
        store.enqueue(review("d1")),
        store.ping(),
        store.claim("w"),
        store.depth(),
        store.records("d1"),
        store.wait_for_job(0.5),
    ):
        with pytest.raises(QueueError) as caught:
            await operation
        assert "hunter2" not in str(caught.value)  # the URL's password stays out of logs
    assert time.monotonic() - started < 2.0
    await store.close()
    with pytest.raises(QueueError, match="closed"):
        await store.depth()


async def test_a_worker_outlives_a_redis_outage(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisJobQueue(f"redis://127.0.0.1:{closed_port()}/0")
    handler = RecordingHandler()
    worker = Worker(store, handler, concurrency=2, poll_interval=0.05)
    async with working(worker):
        await asyncio.sleep(0.3)
        assert worker.running  # still trying, not crashed
    await store.close()
    failures = [r for r in caplog.records if "cannot claim a job" in r.getMessage()]
    assert len(failures) >= 4
    # One line each, naming the store, without a traceback per poll.
    assert all(r.exc_info is None and "127.0.0.1" in r.getMessage() for r in failures)
    assert handler.jobs == []


async def test_a_hanging_redis_fails_within_the_command_timeout() -> None:
    # A server that accepts connections and never answers (overloaded, half-dead).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = RedisJobQueue(f"redis://127.0.0.1:{port}/0", command_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(QueueError):
            await store.enqueue(review("d1"))
        assert time.monotonic() - started < 1.5
        await store.close()


# ---- the service on Redis ------------------------------------------------------------------------


def redis_settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    return make_settings(tmp_path, queue_url=url, **overrides)


def test_make_queue_picks_redis_only_when_configured(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:6379/2"
    assert isinstance(make_queue(make_settings(tmp_path)), SqliteJobQueue)
    queue = make_queue(redis_settings(tmp_path, url, job_lease_seconds=7))
    assert isinstance(queue, RedisJobQueue)
    assert (queue.url, queue.lease_seconds) == (url, 7)


@pytest.mark.parametrize(
    ("queue_url", "explicit", "expected"),
    [
        (None, {}, True),
        (None, {"run_worker": False}, False),
        ("redis://127.0.0.1:6399/0", {}, False),  # servers only enqueue on a shared queue
        ("redis://127.0.0.1:6399/0", {"run_worker": True}, True),
        ("redis://127.0.0.1:6399/0", {"run_worker": False}, False),
    ],
)
def test_the_server_runs_a_worker_only_with_the_embedded_store_or_when_asked(
    tmp_path: Path, queue_url: str | None, explicit: dict[str, bool], expected: bool
) -> None:
    settings = make_settings(tmp_path, queue_url=queue_url, **explicit)
    assert runs_worker_in_server(settings) is expected


def test_run_worker_from_the_environment_counts_as_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEWBOT_RUN_WORKER", "1")
    settings = make_settings(tmp_path, queue_url="redis://127.0.0.1:6399/0")
    assert runs_worker_in_server(settings)


async def test_webhook_answers_503_and_readyz_503_while_redis_is_down(tmp_path: Path) -> None:
    settings = redis_settings(tmp_path, f"redis://127.0.0.1:{closed_port()}/0")
    app = create_app(settings, handler=RecordingHandler())
    assert app.state.worker is None  # a server on a shared queue only enqueues
    async with running(app) as client:
        started = time.monotonic()
        response = await deliver(client, "pull_request", pr_payload("pull_request.opened"))
        assert response.status_code == 503
        assert response.json() == {"error": "queue unavailable"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "job store unusable" in ready.json()["problems"]
        assert time.monotonic() - started < 4.0
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready


async def test_servers_enqueue_and_a_separate_worker_runs_each_delivery_once(
    tmp_path: Path, redis_url: str, queues: QueueFactory
) -> None:
    settings = redis_settings(tmp_path, redis_url)
    apps: list[FastAPI] = [
        create_app(settings, handler=RecordingHandler(), queue=queues()) for _ in range(2)
    ]
    assert all(app.state.worker is None for app in apps)
    async with running(apps[0]) as first, running(apps[1]) as second:
        assert (await first.get("/readyz")).json() == {"status": "ready", "queue_depth": 0}
        opened = pr_payload("pull_request.opened", head="1" * 40)
        assert (await deliver(first, "pull_request", opened, "d-1")).status_code == 202
        again = await deliver(second, "pull_request", opened, "d-1")  # redelivered elsewhere
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        pushed = pr_payload("pull_request.synchronize", head="2" * 40)
        assert (await deliver(second, "pull_request", pushed, "d-2")).status_code == 202
        assert (await second.get("/readyz")).json()["queue_depth"] == 1

    handler = RecordingHandler()
    stop = asyncio.Event()
    # What `reviewbot worker` runs, in another "process" (its own connections).
    worker_process = asyncio.create_task(run_worker(settings, handler, queue=queues(), stop=stop))
    try:
        await handler.wait_for(1)
        await asyncio.sleep(0.2)  # a second run of anything would show up now
    finally:
        stop.set()
        await worker_process
    [job] = handler.jobs
    assert (job.delivery_id, job.head_sha) == ("d-2", "2" * 40)
    assert job.extra["coalesced_deliveries"] == ["d-1"]
