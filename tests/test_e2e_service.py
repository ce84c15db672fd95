"""The whole service end to end: signed deliveries in, reviews on the fake GitHub out.

Only the boundaries are fake: GitHub (``tests.fakegithub``, App JWTs checked against a real
RSA key) and the package registries (``tests.fakeregistry``). The app, its queue, worker,
the production ``Tasks`` handler, the pipeline and publishing are the real ones.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from reviewbot import github as github_module
from reviewbot.app import create_app
from reviewbot.jobs import Job
from reviewbot.logs import uninstall_redaction
from reviewbot.settings import Settings
from reviewbot.tasks import Tasks
from tests.appkey import AppKey, new_app_key
from tests.fakegithub import FakeFile, FakeGitHub, FakePull
from tests.fakeregistry import NPM, PYPI, FakeRegistry
from tests.helpers_service import (
    SECRET,
    deliver,
    delivery_headers,
    make_settings,
    payload,
    pr_comment,
    pr_payload,
    running,
)

OWNER, NAME = "Codertocat", "Hello-World"
FULL_NAME = f"{OWNER}/{NAME}"
NUMBER = 7
BASE_SHA = "b" * 40
HEAD_SHA = "c0ffee" + "1" * 34
APP_ID = 4242
INSTALLATION = 1
NOW = datetime(2025, 1, 1, tzinfo=UTC)
WAIT_S = 10.0

# Sends a user message without `run: true`: a critical finding on line 4.
SEND_WITHOUT_RUN = """\
import { ConversationClient } from "@openhands/typescript-client";

export async function send(client: ConversationClient, id: string, text: string) {
  await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] });
}
"""
SEND_LINE = 4
FINDING_MARKER = "<!-- reviewbot:finding fp="


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return new_app_key()


@pytest.fixture(autouse=True)
def _no_logging_state_leaks() -> Iterator[None]:
    # create_app installs process-wide redaction; leave other test modules a clean slate.
    yield
    uninstall_redaction()


@pytest.fixture
def github(fake_github: FakeGitHub, app_key: AppKey) -> FakeGitHub:
    """The App installed on the repository, with one open PR adding a TypeScript sender."""
    fake_github.register_app(APP_ID, app_key.public_pem, installations=(INSTALLATION,))
    FakeRegistry(fake_github.router)
    fake_github.add_commit(FULL_NAME, BASE_SHA, {"README.md": "hello\n"})
    fake_github.add_commit(
        FULL_NAME, HEAD_SHA, {"README.md": "hello\n", "src/chat.ts": SEND_WITHOUT_RUN}
    )
    fake_github.add_pull(
        FULL_NAME,
        FakePull(
            NUMBER,
            HEAD_SHA,
            BASE_SHA,
            title="Send chat messages",
            files=[FakeFile.added("src/chat.ts", SEND_WITHOUT_RUN)],
        ),
    )
    return fake_github


def service_settings(tmp_path: Path, app_key: AppKey, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "private_key": app_key.private_pem,
        "app_id": APP_ID,
        "npm_registry_url": NPM,
        "pypi_url": PYPI,
        "now": NOW,
        "bot_login": "reviewbot[bot]",
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", **values)


@dataclass
class Service:
    """The production app plus a record of every job its worker finished (or gave up on)."""

    app: FastAPI
    settings: Settings
    github: FakeGitHub
    finished: list[tuple[Job, BaseException | None]] = field(default_factory=list)
    given_up: list[Job] = field(default_factory=list)

    def reviews(self) -> list[dict[str, Any]]:
        return self.github.repo(FULL_NAME).pulls[NUMBER].reviews

    def review_comments(self) -> list[dict[str, Any]]:
        return self.github.repo(FULL_NAME).pulls[NUMBER].review_comments

    def issue_comments(self) -> list[dict[str, Any]]:
        return self.github.repo(FULL_NAME).issue_comments.get(NUMBER, [])

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(poll(), WAIT_S)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}; finished jobs: {self.finished}")

    async def jobs_finished(self, count: int) -> None:
        await self.until(lambda: len(self.finished) >= count, f"{count} finished job(s)")


def build(settings: Settings, github: FakeGitHub) -> Service:
    """``service.build_service``'s wiring, with the handler wrapped to observe completions."""
    tasks = Tasks(settings)
    service = Service(app=FastAPI(), settings=settings, github=github)

    async def handler(job: Job) -> None:
        try:
            await tasks.handle(job)
        except BaseException as error:
            service.finished.append((job, error))
            raise
        service.finished.append((job, None))

    async def give_up(job: Job, error: BaseException) -> None:
        await tasks.give_up(job, error)
        service.given_up.append(job)

    service.app = create_app(
        settings, handler=handler, on_give_up=give_up, on_shutdown=tasks.aclose
    )
    return service


@asynccontextmanager
async def started(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, **overrides: Any
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    service = build(service_settings(tmp_path, app_key, **overrides), github)
    async with running(service.app) as client:
        yield service, client


def opened(head: str = HEAD_SHA) -> dict[str, Any]:
    data = pr_payload("pull_request.opened", head=head)
    return _aimed(data)


def review_requested(login: str) -> dict[str, Any]:
    data = pr_payload("pull_request.review_requested", head=HEAD_SHA)
    data["requested_reviewer"] = {"login": login, "type": "Bot"}
    return _aimed(data)


def command(association: str) -> dict[str, Any]:
    data = pr_comment("/codereview", association=association, login="alice", type="User")
    data["issue"]["number"] = NUMBER
    data["issue"]["pull_request"]["url"] = (
        f"https://api.github.com/repos/{FULL_NAME}/pulls/{NUMBER}"
    )
    return _aimed(data)


def _aimed(data: dict[str, Any]) -> dict[str, Any]:
    """Point a fixture payload at the fake's repository, PR and installation."""
    data["repository"]["name"] = NAME
    data["repository"]["full_name"] = FULL_NAME
    data["repository"]["owner"]["login"] = OWNER
    data["installation"] = {"id": INSTALLATION}
    if "pull_request" in data:
        data["number"] = NUMBER
        data["pull_request"]["number"] = NUMBER
        data["pull_request"]["state"] = "open"
        data["pull_request"]["draft"] = False
    return data


def assert_full_review(review: dict[str, Any], delivery_id: str) -> None:
    assert review["state"] == "COMMENTED"
    assert review["commit_id"] == HEAD_SHA
    assert review["user"]["login"] == "reviewbot[bot]"
    body = review["body"]
    assert f"<!-- reviewbot:review head={HEAD_SHA} -->" in body
    assert f"<!-- reviewbot:delivery id={delivery_id} -->" in body
    assert "Taste Rating" in body


# ---- the happy path ----------------------------------------------------------------------------


async def test_opened_pr_gets_one_review_with_inline_finding(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    delivery = str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        response = await deliver(client, "pull_request", opened(), delivery)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        await service.until(lambda: len(service.reviews()) >= 1, "the review")
        await service.jobs_finished(1)

    [review] = service.reviews()
    assert_full_review(review, delivery)
    posts = github.requests_to("create_review")
    assert len(posts) == 1 and posts[0].json["event"] == "COMMENT"
    [comment] = service.review_comments()
    assert comment["pull_request_review_id"] == review["id"]
    assert (comment["path"], comment["line"]) == ("src/chat.ts", SEND_LINE)
    assert FINDING_MARKER in comment["body"]
    # The worker acted as the installation (a token minted from a verified App JWT).
    assert all(r.login == "app" for r in github.requests_to("access_token"))
    assert github.issued_tokens
    assert service.finished[0][1] is None


async def test_redelivery_is_a_duplicate_and_a_reviewed_head_is_not_reviewed_again(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    delivery = str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        assert (await deliver(client, "pull_request", opened(), delivery)).status_code == 202
        await service.jobs_finished(1)
        again = await deliver(client, "pull_request", opened(), delivery)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

        # A new delivery (e.g. `reopened`) of the same head: an auto trigger, already reviewed.
        fresh = await deliver(client, "pull_request", opened())
        assert fresh.status_code == 202
        await service.jobs_finished(2)

    assert [error for _, error in service.finished] == [None, None]
    # The second job really ran (it read the PR and the bot's earlier reviews) and then held off.
    assert len(github.requests_to("get_pull")) == 2
    assert len(github.requests_to("graphql")) >= 2
    assert len(service.reviews()) == 1
    assert len(github.requests_to("create_review")) == 1


async def test_review_requested_from_the_bot_forces_a_fresh_review(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        assert (await deliver(client, "pull_request", opened(), first)).status_code == 202
        await service.jobs_finished(1)
        response = await deliver(
            client, "pull_request", review_requested(service.settings.bot_login or ""), second
        )
        assert response.status_code == 202, response.text
        await service.until(lambda: len(service.reviews()) >= 2, "the second review")
        await service.jobs_finished(2)

    one, two = service.reviews()
    assert_full_review(one, first)
    assert_full_review(two, second)
    assert f"delivery id={first}" not in two["body"]
    assert len(github.requests_to("create_review")) == 2
    # The finding is still open: counted again, but not repeated inline (the first review's
    # comment on the sendEvent line still stands).
    [comment] = service.review_comments()
    assert comment["pull_request_review_id"] == one["id"]
    assert comment["line"] == SEND_LINE


async def test_review_requested_from_someone_else_is_ignored(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    async with started(tmp_path, app_key, github) as (service, client):
        response = await deliver(client, "pull_request", review_requested("hubot"))
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert service.finished == [] and service.reviews() == []


# ---- GitHub refusing or failing ----------------------------------------------------------------


async def test_rejected_inline_comments_are_folded_into_the_body(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    # GitHub's answer to a comment on a line it cannot resolve; only reviews with comments.
    github.fail(
        "create_review",
        status=422,
        body={"message": "Unprocessable Entity", "errors": ["Line could not be resolved"]},
        when=lambda recorded: bool(recorded.json and recorded.json.get("comments")),
    )
    delivery = str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        assert (await deliver(client, "pull_request", opened(), delivery)).status_code == 202
        await service.until(lambda: len(service.reviews()) >= 1, "the folded review")
        await service.jobs_finished(1)

    [review] = service.reviews()
    assert_full_review(review, delivery)
    assert FINDING_MARKER in review["body"]
    assert "src/chat.ts" in review["body"] and "conversation-send-missing-run" in review["body"]
    assert service.review_comments() == []
    attempts = github.requests_to("create_review")
    assert [bool(r.json.get("comments")) for r in attempts] == [True, False]
    assert service.finished[0][1] is None


@pytest.fixture
def fast_github_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gateway's own backoff (1 s, doubling) would make every failing test take seconds.
    fast = functools.partial(github_module.RetryPolicy, backoff_s=0.01)
    monkeypatch.setattr(github_module, "RetryPolicy", fast)


@pytest.mark.usefixtures("fast_github_retries")
@pytest.mark.parametrize(
    ("failure", "times"),
    [
        ("server_error", 1),  # absorbed by the gateway's own retry
        ("server_error", 4),  # outlasts it: the worker retries the job
        ("secondary_rate_limit", 1),
    ],
)
async def test_transient_failure_is_retried_into_one_review(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, failure: str, times: int
) -> None:
    if failure == "server_error":
        github.fail("get_pull", status=500, times=times)
    else:
        github.secondary_rate_limit("get_pull", retry_after=1, times=times)
    delivery = str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        assert (await deliver(client, "pull_request", opened(), delivery)).status_code == 202
        await service.until(lambda: len(service.reviews()) >= 1, "the review after a retry")
        job_failures = 1 if times > github_module.RetryPolicy().max_retries else 0
        await service.jobs_finished(1 + job_failures)

    assert len([error for _, error in service.finished if error is not None]) == job_failures
    [review] = service.reviews()
    assert_full_review(review, delivery)
    assert len(github.requests_to("get_pull")) >= times + 1
    assert service.given_up == []
    assert not any(FAILURE in c["body"] for c in service.issue_comments())


FAILURE = "<!-- reviewbot:failure -->"


@pytest.mark.usefixtures("fast_github_retries")
async def test_exhausted_retries_leave_a_failure_note_and_no_review(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.fail("get_pull", status=500, times=1_000)
    async with started(tmp_path, app_key, github, job_max_attempts=2) as (service, client):
        assert (await deliver(client, "pull_request", opened())).status_code == 202
        await service.until(lambda: bool(service.given_up), "the give-up")

    assert service.reviews() == [] and github.requests_to("create_review") == []
    [note] = service.issue_comments()
    assert FAILURE in note["body"]
    assert note["user"]["login"] == "reviewbot[bot]"
    assert "2 attempt" in note["body"]
    # Exactly the budget: two attempts, both failing, then the note.
    assert len([e for _, e in service.finished if e is not None]) == 2
    assert len(service.finished) == 2


# ---- /codereview ------------------------------------------------------------------------------


async def test_codereview_from_a_member_is_reviewed(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    delivery = str(uuid.uuid4())
    async with started(tmp_path, app_key, github) as (service, client):
        response = await deliver(client, "issue_comment", command("MEMBER"), delivery)
        assert response.status_code == 202, response.text
        await service.until(lambda: len(service.reviews()) >= 1, "the commanded review")
        await service.jobs_finished(1)

    [review] = service.reviews()
    assert_full_review(review, delivery)


@pytest.mark.parametrize("association", ["CONTRIBUTOR", "NONE", "FIRST_TIME_CONTRIBUTOR"])
async def test_codereview_without_write_access_is_ignored(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, association: str
) -> None:
    async with started(tmp_path, app_key, github) as (service, client):
        response = await deliver(client, "issue_comment", command(association))
        assert response.status_code == 202
        assert response.json()["status"] == "ignored"
        assert await service.app.state.queue.depth() == 0
    assert service.finished == [] and service.reviews() == []
    assert github.api_requests == []


# ---- not configured ---------------------------------------------------------------------------


async def test_missing_app_credentials_refuse_work_but_answer_ping(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    async with started(tmp_path, app_key, github, app_id=None, private_key=None) as (
        service,
        client,
    ):
        refused = await deliver(client, "pull_request", opened())
        pong = await deliver(client, "ping", payload("ping"))
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
        depth = await service.app.state.queue.depth()

    assert refused.status_code == 503
    assert pong.status_code == 200 and pong.json()["status"] == "pong"
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert health.status_code == 200
    assert depth == 0 and service.finished == []
    assert github.requests == []


# ---- a real HTTP server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_real_uvicorn_server_end_to_end(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    # Our own request to the local server goes out for real; GitHub stays faked.
    github.router.route(host="127.0.0.1").pass_through()
    service = build(service_settings(tmp_path, app_key), github)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(service.app, host="127.0.0.1", port=port, lifespan="on", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        await service.until(lambda: server.started, "uvicorn to start")
        data = opened()
        body = json.dumps(data).encode()
        delivery = str(uuid.uuid4())
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(
                f"http://127.0.0.1:{port}/webhook",
                content=body,
                headers=delivery_headers(body, "pull_request", delivery),
            )
            assert response.status_code == 202, response.text
            bad = await client.post(
                f"http://127.0.0.1:{port}/webhook",
                content=body,
                headers=delivery_headers(body, "pull_request", secret="wrong-secret-0123456789"),
            )
            assert bad.status_code == 401
            await service.until(lambda: len(service.reviews()) >= 1, "the review")
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, WAIT_S)

    [review] = service.reviews()
    assert_full_review(review, delivery)
    assert len(service.review_comments()) == 1


# ---- secrets stay out of the logs ---------------------------------------------------------------


async def test_no_secret_reaches_the_logs(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with started(tmp_path, app_key, github) as (service, client):
        assert (await deliver(client, "pull_request", opened())).status_code == 202
        await service.until(lambda: len(service.reviews()) >= 1, "the review")
        await service.jobs_finished(1)

    assert github.issued_tokens
    pem_body = "".join(
        line for line in app_key.private_pem.splitlines() if line and not line.startswith("-----")
    )
    pem_lines = [line for line in app_key.private_pem.splitlines()[1:-1] if len(line) > 20]
    secrets = [SECRET, *github.issued_tokens]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) > 5, "the flow should log something"
    for message in messages:
        for secret in secrets:
            assert secret not in message
        assert pem_body not in message.replace("\n", "").replace("\\n", "")
        for line in pem_lines:
            assert line not in message
    # Nor any JWT the worker signed (three base64url parts starting with a JSON header).
    jwt_like = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
    assert not any(jwt_like.search(message) for message in messages)
