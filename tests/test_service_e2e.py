"""Issue 3's service guarantees, end to end through the production wiring.

``service.build_service`` as ``reviewbot serve`` runs it (webhook, SQLite queue, in-process
worker, ``Tasks``, pipeline, publishing, the githubkit gateway), with only the boundaries
faked: GitHub (``tests.fakegithub``, the App's JWTs checked against a real RSA key) and the
package registries (``tests.fakeregistry``) on the same respx router. Outcomes are read from
the fake (what was posted) and from the job store (what the worker recorded), never from a
wrapped handler.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from reviewbot import github as github_module
from reviewbot.jobs import JobStatus
from reviewbot.logs import uninstall_redaction
from reviewbot.service import build_service, resolve_bot_login
from reviewbot.settings import Settings
from reviewbot.tasks import Tasks
from tests.appkey import AppKey, new_app_key
from tests.fakegithub import FakeFile, FakeGitHub, FakePull, Recorded, fake_github_server
from tests.fakeregistry import NPM, PYPI, FakeRegistry
from tests.helpers_service import (
    BOT_LOGIN,
    FINDING_MARKER,
    SECRET,
    SEND_LINE,
    SEND_WITH_RUN,
    SEND_WITHOUT_RUN,
    aimed,
    deliver,
    delivery_headers,
    make_settings,
    open_pull,
    payload,
    pr_comment,
    pr_payload,
    running,
    settled,
)

FULL_NAME = "acme-corp/chat-ui"
NUMBER = 12
# Not the fixtures' installation 1: the token must be minted for the delivery's installation.
INSTALLATION = 77
APP_ID = 31337
BASE = "ba5e" * 10
HEAD = "1eaf" * 10
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
FAILURE_MARKER = "<!-- reviewbot:failure -->"

PACKAGE_JSON = '{\n  "dependencies": {\n    "left-pad": "%s"\n  }\n}\n'


def sha(n: int) -> str:
    return f"{n:040x}"


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return new_app_key()


@pytest.fixture(autouse=True)
def _no_redaction_leaks() -> Iterator[None]:
    # create_app installs process-wide redaction; leave other test modules a clean slate.
    yield
    uninstall_redaction()


def install(fake: FakeGitHub, key: AppKey) -> FakeRegistry:
    """The App installed on the repository, with an open PR adding a TypeScript sender."""
    fake.register_app(APP_ID, key.public_pem, installations=(INSTALLATION,))
    registry = FakeRegistry(fake.router)
    open_pull(
        fake, FULL_NAME, NUMBER, base=BASE, head=HEAD, files={"src/chat.ts": SEND_WITHOUT_RUN}
    )
    return registry


@pytest.fixture
def github(fake_github: FakeGitHub, app_key: AppKey) -> FakeGitHub:
    install(fake_github, app_key)
    return fake_github


@pytest.fixture
def fast_github_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small caps on the gateway's own retries (one, 10 ms apart, no wait above 0.5 s).

    ``Tasks`` builds its gateways with the default policy (1 s backoff, waits up to 60 s):
    the job's own retry is what these tests are about.
    """
    small = functools.partial(
        github_module.RetryPolicy, max_retries=1, backoff_s=0.01, max_wait_s=0.5, total_wait_s=1
    )
    monkeypatch.setattr(github_module, "RetryPolicy", small)


def settings_for(tmp_path: Path, key: AppKey, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "private_key": key.private_pem,
        "npm_registry_url": NPM,
        "pypi_url": PYPI,
        "now": NOW,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", **values)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The production app with its lifespan (queue, in-process worker) running."""
    app = build_service(settings)
    async with running(app) as client:
        yield app, client


# ---- payloads and reading the fake --------------------------------------------------------------


def pr_event(action: str, head: str = HEAD) -> dict[str, Any]:
    return aimed(
        pr_payload(f"pull_request.{action}", head=head),
        FULL_NAME,
        NUMBER,
        installation=INSTALLATION,
    )


def requested(login: str, head: str = HEAD) -> dict[str, Any]:
    data = pr_event("review_requested", head)
    data["requested_reviewer"] = {"login": login, "type": "Bot" if "[bot]" in login else "User"}
    return data


def command(association: str, *, login: str = "alice", user_type: str = "User") -> dict[str, Any]:
    data = pr_comment("/codereview", association=association, login=login, type=user_type)
    return aimed(data, FULL_NAME, NUMBER, installation=INSTALLATION)


def pull(fake: FakeGitHub) -> FakePull:
    return fake.repo(FULL_NAME).pulls[NUMBER]


def comments_of(fake: FakeGitHub, review: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in pull(fake).review_comments if c["pull_request_review_id"] == review["id"]]


def failure_notes(fake: FakeGitHub) -> list[dict[str, Any]]:
    notes = fake.repo(FULL_NAME).issue_comments.get(NUMBER, [])
    return [c for c in notes if FAILURE_MARKER in c["body"]]


def assert_review_of(review: dict[str, Any], head: str, delivery: str) -> None:
    """Posted by the bot on ``head``, with the sections and both hidden markers."""
    assert review["user"]["login"] == BOT_LOGIN
    assert review["commit_id"] == head
    body = review["body"]
    assert body.startswith(f"<!-- reviewbot:review head={head} -->")
    assert f"<!-- reviewbot:delivery id={delivery} -->" in body
    for section in ("### Taste Rating", "[RISK ASSESSMENT]", "**VERDICT:**", "**KEY INSIGHT:**"):
        assert section in body


def move_head(fake: FakeGitHub, new_head: str) -> None:
    """A push: the PR's head becomes ``new_head`` (same files, a new commit)."""
    fake.add_commit(FULL_NAME, new_head, fake.repo(FULL_NAME).commits[pull(fake).head_sha])
    pull(fake).head_sha = new_head


def is_reviews_query(recorded: Recorded) -> bool:
    # The previous-reviews query: the pipeline's last read, right before it posts.
    return isinstance(recorded.json, dict) and "reviews(" in str(recorded.json.get("query"))


# ---- one delivery, one review --------------------------------------------------------------------


async def test_opened_pr_gets_one_comment_review_with_an_inline_finding(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        response = await deliver(client, "pull_request", pr_event("opened"), delivery)
        assert response.status_code == 202 and response.json()["status"] == "queued"
        [record] = await settled(app.state.queue, delivery)

    assert (record.status, record.attempts) == (JobStatus.DONE, 1)
    [post] = github.requests_to("create_review")
    assert post.json["event"] == "COMMENT" and post.json["commit_id"] == HEAD
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert "🔴 **Needs improvement**" in review["body"] and "[CRITICAL ISSUES]" in review["body"]
    [comment] = comments_of(github, review)
    assert (comment["path"], comment["line"], comment["side"]) == (
        "src/chat.ts",
        SEND_LINE,
        "RIGHT",
    )
    assert "conversation-send-missing-run" in comment["body"]
    assert FINDING_MARKER.search(comment["body"])
    # Acted as the delivery's installation, with a token minted from a verified App JWT.
    [mint] = github.requests_to("access_token")
    assert mint.login == "app" and mint.path == f"/app/installations/{INSTALLATION}/access_tokens"
    assert all(r.login == BOT_LOGIN for r in github.api_requests)


async def test_redelivery_is_answered_as_duplicate_and_never_reviews_twice(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        first = await deliver(client, "pull_request", pr_event("opened"), delivery)
        while_queued = await deliver(client, "pull_request", pr_event("opened"), delivery)
        await settled(app.state.queue, delivery)
        after_done = await deliver(client, "pull_request", pr_event("opened"), delivery)
        records = await app.state.queue.records(delivery)

    assert first.status_code == 202
    for again in (while_queued, after_done):
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert [(r.status, r.attempts) for r in records] == [(JobStatus.DONE, 1)]
    assert len(github.requests_to("get_pull")) == 1
    assert len(pull(github).reviews) == 1


async def test_job_rerun_after_posting_but_before_done_does_not_post_again(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    """The worker posted, then died before marking the job done: its queue record is lost.

    The same delivery runs again as a new job; a forced trigger (``/codereview``) so that
    only the delivery marker, not the "head already reviewed" rule, can stop a second review.
    """
    settings = settings_for(tmp_path, app_key)
    crashed = str(uuid.uuid4())
    async with serving(settings.model_copy(update={"run_worker": False})) as (app, client):
        assert (
            await deliver(client, "issue_comment", command("MEMBER"), crashed)
        ).status_code == 202
        job = await app.state.queue.claim("worker-about-to-crash")
        assert job is not None and job.delivery_id == crashed and job.forced
        # The worker's handler runs (and posts) ...
        tasks = Tasks(settings)
        await tasks.handle(job)
        await tasks.aclose()
        # ... and the process dies before `complete`: the record is never updated.
    assert len(pull(github).reviews) == 1

    fresh = tmp_path / "fresh-store"  # a new queue record for the same delivery
    rerun_settings = settings.model_copy(update={"data_dir": fresh})
    other = str(uuid.uuid4())
    async with serving(rerun_settings) as (app, client):
        again = await deliver(client, "issue_comment", command("MEMBER"), crashed)
        assert again.status_code == 202 and again.json()["status"] == "queued"
        [record] = await settled(app.state.queue, crashed)
        # A different /codereview of the same head is a new request: it is reviewed.
        assert (await deliver(client, "issue_comment", command("MEMBER"), other)).status_code == 202
        await settled(app.state.queue, other)

    assert (record.status, record.attempts) == (JobStatus.DONE, 1)
    first, second = pull(github).reviews
    assert_review_of(first, HEAD, crashed)
    assert_review_of(second, HEAD, other)
    assert len(github.requests_to("create_review")) == 2


# ---- coalescing and a moving head ---------------------------------------------------------------


async def test_pushes_queued_while_no_worker_runs_coalesce_into_one_review_of_the_newest(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    heads = [sha(1), sha(2), sha(3)]
    for head in heads:
        move_head(github, head)  # GitHub's state after the three pushes: the head is h3
    deliveries = [f"push-{n}" for n in range(1, 4)]
    settings = settings_for(tmp_path, app_key)
    async with serving(settings.model_copy(update={"run_worker": False})) as (app, client):
        answers = [
            await deliver(client, "pull_request", pr_event("synchronize", head), delivery)
            for head, delivery in zip(heads, deliveries, strict=True)
        ]
        depth = await app.state.queue.depth()
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert depth == 1
    assert github.requests == []  # nothing ran yet

    async with serving(settings) as (app, client):
        [kept] = await settled(app.state.queue, deliveries[-1])
        older = [(await app.state.queue.records(d))[0] for d in deliveries[:-1]]

    assert kept.status is JobStatus.DONE and kept.job.head_sha == heads[-1]
    assert list(kept.job.extra["coalesced_deliveries"]) == deliveries[:-1]
    assert [r.status for r in older] == [JobStatus.SUPERSEDED] * 2
    assert older[-1].superseded_by == kept.job.id  # each push folded into the next one
    assert len(github.requests_to("get_pull")) == 1  # only the newest job ran
    [review] = pull(github).reviews
    assert_review_of(review, heads[-1], deliveries[-1])


async def test_head_moving_during_an_automatic_review_reviews_the_new_head_instead(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    pushed = sha(99)
    github.before("graphql", lambda _: move_head(github, pushed), when=is_reviews_query)
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    # The review of the old head is never posted; the retry reviews the head it moved to
    # (the new head's own delivery may be late, or lost to coalescing).
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    [review] = pull(github).reviews
    assert review["commit_id"] == pushed


async def test_head_moving_during_a_requested_review_retries_and_reviews_the_new_head(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    pushed = sha(99)
    github.before("graphql", lambda _: move_head(github, pushed), when=is_reviews_query)
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", requested(BOT_LOGIN), delivery)
        [record] = await settled(app.state.queue, delivery)

    # Someone asked for this review: it is not dropped but retried on the head it moved to.
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    [review] = pull(github).reviews
    assert_review_of(review, pushed, delivery)
    assert [r.json["commit_id"] for r in github.requests_to("create_review")] == [pushed]


async def test_job_of_a_dead_worker_is_resumed_by_a_restarted_service(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    settings = settings_for(tmp_path, app_key, job_lease_seconds=0.3)
    delivery = str(uuid.uuid4())
    async with serving(settings.model_copy(update={"run_worker": False})) as (app, client):
        assert (
            await deliver(client, "pull_request", pr_event("opened"), delivery)
        ).status_code == 202
        claimed = await app.state.queue.claim("worker-that-dies")
        assert claimed is not None and claimed.delivery_id == delivery
        [record] = await app.state.queue.records(delivery)
        assert record.status is JobStatus.RUNNING
    # The worker never completes, fails or releases it; the process is gone.

    async with serving(settings) as (app, client):
        [record] = await settled(app.state.queue, delivery)

    # The dead claim counts as an attempt; the resumed one posted exactly one review.
    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert len(github.requests_to("create_review")) == 1


# ---- GitHub refusing -----------------------------------------------------------------------------


async def test_inline_comments_rejected_with_422_are_folded_into_the_body(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.fail(
        "create_review",
        status=422,
        body={"message": "Unprocessable Entity", "errors": ["Line could not be resolved"]},
        when=lambda recorded: bool(recorded.json.get("comments")),
    )
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    assert record.status is JobStatus.DONE
    rejected, accepted = github.requests_to("create_review")
    [inline] = rejected.json["comments"]
    assert "comments" not in accepted.json
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert pull(github).review_comments == []
    # The finding kept its marker (a later re-review still recognises it) and its place.
    fingerprint = FINDING_MARKER.search(inline["body"])
    assert fingerprint is not None
    assert FINDING_MARKER.findall(review["body"]) == [fingerprint.group(1)]
    assert f"`src/chat.ts:{SEND_LINE}`" in review["body"]


async def test_approve_refused_with_422_is_posted_as_a_comment(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.add_commit(FULL_NAME, HEAD, {"README.md": "hello\n", "src/chat.ts": SEND_WITH_RUN})
    pull(github).files = [FakeFile.added("src/chat.ts", SEND_WITH_RUN)]
    github.fail(
        "create_review",
        status=422,
        body={"message": "Unprocessable Entity", "errors": ["Can not approve"]},
        when=lambda recorded: recorded.json.get("event") == "APPROVE",
    )
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    assert record.status is JobStatus.DONE
    assert [r.json["event"] for r in github.requests_to("create_review")] == ["APPROVE", "COMMENT"]
    [review] = pull(github).reviews
    assert review["state"] == "COMMENTED"
    assert_review_of(review, HEAD, delivery)
    assert "🟢 **Good taste**" in review["body"]


# ---- transient failures and the retry budget ----------------------------------------------------


@pytest.mark.usefixtures("fast_github_retries")
async def test_secondary_rate_limit_on_the_first_read_retries_the_job_after_retry_after(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.secondary_rate_limit("get_pull", retry_after=1)
    reads: list[float] = []
    github.before("get_pull", lambda _: reads.append(time.monotonic()), times=10)
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    assert (record.status, record.attempts) == (JobStatus.DONE, 2)
    assert len(reads) == 2 and reads[1] - reads[0] >= 0.9  # GitHub's Retry-After was honoured
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert failure_notes(github) == []


@pytest.mark.usefixtures("fast_github_retries")
async def test_exhausted_retry_budget_posts_a_failure_note_and_no_review(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.fail("get_pull", status=500, times=1_000)
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key, job_max_attempts=3)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    assert (record.status, record.attempts) == (JobStatus.FAILED, 3)
    assert record.last_error is not None and "500" in record.last_error
    # Three attempts, each with the gateway's one quick retry of the read.
    assert len(github.requests_to("get_pull")) == 6
    assert github.requests_to("create_review") == [] and pull(github).reviews == []
    [note] = failure_notes(github)
    assert note["user"]["login"] == BOT_LOGIN
    assert "after 3 attempt(s)" in note["body"] and f"`{HEAD}`" in note["body"]


# ---- who may trigger a review --------------------------------------------------------------------


async def test_review_requested_from_the_bot_reviews_a_head_an_auto_trigger_skips(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    opened, reopened, rerequest = (str(uuid.uuid4()) for _ in range(3))
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), opened)
        await settled(app.state.queue, opened)
        # A new automatic delivery of the head already reviewed: the job runs and holds off.
        await deliver(client, "pull_request", pr_event("synchronize"), reopened)
        [skipped] = await settled(app.state.queue, reopened)
        answer = await deliver(client, "pull_request", requested(BOT_LOGIN), rerequest)
        [forced] = await settled(app.state.queue, rerequest)

    assert answer.status_code == 202
    assert skipped.status is JobStatus.DONE and forced.status is JobStatus.DONE
    assert len(github.requests_to("get_pull")) == 3
    first, second = pull(github).reviews
    assert_review_of(first, HEAD, opened)
    assert_review_of(second, HEAD, rerequest)
    # A full review again, its finding counted as still open rather than repeated inline.
    assert "**Still open from an earlier review:** 1 finding" in second["body"]
    assert comments_of(github, second) == []


async def test_codereview_command_needs_write_access_and_never_comes_from_the_bot(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    member = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        contributor = await deliver(client, "issue_comment", command("CONTRIBUTOR"))
        own = await deliver(
            client, "issue_comment", command("NONE", login=BOT_LOGIN, user_type="Bot")
        )
        depth = await app.state.queue.depth()
        assert github.requests == []
        accepted = await deliver(client, "issue_comment", command("MEMBER"), member)
        [record] = await settled(app.state.queue, member)

    assert depth == 0
    assert contributor.status_code == 202 and contributor.json()["status"] == "ignored"
    assert "CONTRIBUTOR" in contributor.json()["reason"]
    assert own.status_code == 202 and own.json() == {
        "status": "ignored",
        "reason": "comment by the bot itself",
    }
    assert accepted.status_code == 202 and record.status is JobStatus.DONE
    assert record.job.trigger == "command" and record.job.head_sha is None
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, member)


async def test_re_review_after_a_push_keeps_open_findings_quiet_and_lists_fixed_ones(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    first_files = {"src/chat.ts": SEND_WITHOUT_RUN, "src/notify.ts": SEND_WITHOUT_RUN}
    github.add_commit(FULL_NAME, HEAD, first_files)
    pull(github).files = [FakeFile.added(path, text) for path, text in first_files.items()]
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), first)
        await settled(app.state.queue, first)
        [one] = pull(github).reviews
        marks = {c["path"]: FINDING_MARKER.findall(c["body"])[0] for c in comments_of(github, one)}

        # The push fixes notify.ts and leaves chat.ts as it was.
        pushed = sha(2)
        fixed = {"src/chat.ts": SEND_WITHOUT_RUN, "src/notify.ts": SEND_WITH_RUN}
        github.add_commit(FULL_NAME, pushed, fixed)
        pull(github).head_sha = pushed
        pull(github).files = [FakeFile.added(path, text) for path, text in fixed.items()]
        await deliver(client, "pull_request", pr_event("synchronize", pushed), second)
        await settled(app.state.queue, second)

    assert set(marks) == {"src/chat.ts", "src/notify.ts"}
    assert marks["src/chat.ts"] != marks["src/notify.ts"]
    _, two = pull(github).reviews
    assert_review_of(two, pushed, second)
    assert comments_of(github, two) == []  # nothing repeated inline
    body = two["body"]
    assert "**Still open from an earlier review:** 1 finding already commented on is" in body
    assert "**Resolved since the last review:** 1 earlier finding no longer applies." in body
    assert f"<!-- reviewbot:resolved fp={marks['src/notify.ts']} -->" in body
    assert marks["src/chat.ts"] not in body  # still open: counted, not listed again
    assert "🔴" in body  # the open finding still decides the rating


@pytest.mark.parametrize("review_all", [False, True])
async def test_auto_trigger_skips_prs_touching_neither_conversations_nor_dependencies(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, review_all: bool
) -> None:
    readme = "hello\n\nMore words.\n"
    github.add_commit(FULL_NAME, HEAD, {"README.md": readme})
    pull(github).files = [FakeFile("README.md", patch="@@ -1 +1,3 @@\n hello\n+\n+More words.\n")]
    delivery = str(uuid.uuid4())
    settings = settings_for(tmp_path, app_key, review_all_prs=review_all)
    async with serving(settings) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        [record] = await settled(app.state.queue, delivery)

    assert record.status is JobStatus.DONE
    assert len(github.requests_to("list_files")) == 1  # it had to read the files to know
    if not review_all:
        assert github.requests_to("create_review") == [] and pull(github).reviews == []
        return
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert review["state"] == "APPROVED" and "🟢" in review["body"]


async def test_dependency_bumped_to_a_two_hour_old_version_gets_a_red_review(
    tmp_path: Path, app_key: AppKey, fake_github: FakeGitHub
) -> None:
    registry = install(fake_github, app_key)
    registry.publish("npm", "left-pad", "1.3.0", NOW - timedelta(days=400))
    registry.publish("npm", "left-pad", "1.3.1", NOW - timedelta(hours=2))
    fake_github.add_commit(FULL_NAME, BASE, {"package.json": PACKAGE_JSON % "1.3.0"})
    fake_github.add_commit(FULL_NAME, HEAD, {"package.json": PACKAGE_JSON % "1.3.1"})
    patch = (
        '@@ -1,5 +1,5 @@\n {\n   "dependencies": {\n'
        '-    "left-pad": "1.3.0"\n+    "left-pad": "1.3.1"\n   }\n }\n'
    )
    pull(fake_github).files = [FakeFile("package.json", patch=patch)]
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key)) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        await settled(app.state.queue, delivery)

    [review] = pull(fake_github).reviews
    assert_review_of(review, HEAD, delivery)
    assert "🔴 **Needs improvement**" in review["body"]
    [comment] = comments_of(fake_github, review)
    assert (comment["path"], comment["line"]) == ("package.json", 3)
    assert "dependency-too-fresh" in comment["body"] and "left-pad" in comment["body"]
    assert any(url.startswith(f"{NPM}/left-pad") for url in registry.requests)


# ---- configuration -------------------------------------------------------------------------------


async def test_without_app_credentials_work_is_refused_but_ping_answers(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    settings = settings_for(tmp_path, app_key, app_id=None, private_key=None)
    async with serving(settings) as (app, client):
        refused = await deliver(client, "pull_request", pr_event("opened"))
        pong = await deliver(client, "ping", payload("ping"))
        ready = await client.get("/readyz")
        depth = await app.state.queue.depth()

    assert refused.status_code == 503 and "not configured" in refused.json()["error"]
    assert pong.status_code == 200 and pong.json()["status"] == "pong"
    assert ready.status_code == 503
    problems = ready.json()["problems"]
    assert any("REVIEWBOT_APP_ID" in problem for problem in problems)
    assert any("REVIEWBOT_PRIVATE_KEY" in problem for problem in problems)
    assert depth == 0 and github.requests == []


async def test_no_secret_reaches_a_log_record_at_debug(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delivery = str(uuid.uuid4())
    async with serving(settings_for(tmp_path, app_key, log_level="DEBUG")) as (app, client):
        await deliver(client, "pull_request", pr_event("opened"), delivery)
        await settled(app.state.queue, delivery)
        body = json.dumps(pr_event("opened")).encode()
        forged = delivery_headers(body, "pull_request", secret=SECRET[::-1])
        assert (await client.post("/webhook", content=body, headers=forged)).status_code == 401

    assert len(pull(github).reviews) == 1 and github.issued_tokens
    pem_lines = [line for line in app_key.private_pem.splitlines() if "-----" not in line]
    secrets = [SECRET, *github.issued_tokens, *pem_lines]
    records = caplog.records
    assert len(records) > 10
    for record in records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text or "")
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}… logged by {record.name}"
        assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", text)  # no App JWT either


async def test_github_enterprise_server_base_url_works_end_to_end(
    tmp_path: Path, app_key: AppKey
) -> None:
    api = "https://ghe.example/api/v3"
    with fake_github_server(api) as ghes:
        install(ghes, app_key)
        delivery = str(uuid.uuid4())
        settings = settings_for(tmp_path, app_key, github_api_url=api)
        async with serving(settings) as (app, client):
            await deliver(client, "pull_request", pr_event("opened"), delivery)
            [record] = await settled(app.state.queue, delivery)

    assert record.status is JobStatus.DONE
    [review] = pull(ghes).reviews
    assert_review_of(review, HEAD, delivery)
    urls = [httpx.URL(r.url) for r in ghes.requests]
    assert {url.host for url in urls} == {"ghe.example"}
    assert all(url.path.startswith("/api/") for url in urls)
    assert {r.url for r in ghes.requests_to("graphql")} == {"https://ghe.example/api/graphql"}


# ---- a real HTTP server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_real_uvicorn_with_the_bot_login_read_from_the_app(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    # Our requests to the local server go out for real; GitHub stays faked in-process.
    github.router.route(host="127.0.0.1").pass_through()
    configured = settings_for(tmp_path, app_key, bot_login=None)
    # As `reviewbot serve` does: the login comes from the App's slug (GET /app with the JWT).
    settings = await resolve_bot_login(configured)
    assert settings.bot_login == BOT_LOGIN
    app = build_service(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None)
    )
    serve = asyncio.create_task(server.serve())
    delivery = str(uuid.uuid4())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serve.done(), "uvicorn stopped during start-up"
                await asyncio.sleep(0.01)
        body = json.dumps(requested(BOT_LOGIN)).encode()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            answer = await client.post(
                "/webhook", content=body, headers=delivery_headers(body, "pull_request", delivery)
            )
            assert answer.status_code == 202, answer.text
            [record] = await settled(app.state.queue, delivery)
            ready = await client.get("/readyz")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serve, 10)

    assert record.status is JobStatus.DONE and record.job.trigger == "requested"
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    [review] = pull(github).reviews
    assert_review_of(review, HEAD, delivery)
    assert len(github.requests_to("app")) == 1  # read once, at start-up
