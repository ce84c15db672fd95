"""The embedded SQLite queue: dedup, coalescing, leases, retention, store failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reviewbot.jobs import EnqueueStatus, Job, JobStatus, PermanentJobError, QueueError
from reviewbot.sqlite_queue import SqliteJobQueue
from reviewbot.worker import Worker
from tests.helpers_jobs import FAST, Clock, review, status_of
from tests.helpers_service import RecordingHandler


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteJobQueue]:
    store = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ---- storing and claiming -------------------------------------------------------------------


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


# ---- coalescing -----------------------------------------------------------------------------


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


# ---- leases and crash recovery --------------------------------------------------------------


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


# ---- retention and failures of the store ----------------------------------------------------


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


async def test_store_failure_reaches_every_waiting_enqueue(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SqliteJobQueue(blocker / "jobs.sqlite3")
    outcomes = await asyncio.gather(
        *(store.enqueue(review(f"d{n}", number=n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, QueueError) for outcome in outcomes)
    await store.close()
