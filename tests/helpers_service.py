"""Helpers for the service tests: settings, payloads, signed deliveries, a recording handler."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from reviewbot.jobs import Job, JobQueue, JobRecord, JobStatus
from reviewbot.settings import Settings
from reviewbot.webhook import sign
from tests.fakegithub import FakeFile, FakeGitHub, FakePull

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "test-webhook-secret-0123456789"
BOT_LOGIN = "reviewbot[bot]"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secret": SECRET,
        "app_id": 12345,
        "private_key": "not-a-real-key-only-for-tests",
        "bot_login": BOT_LOGIN,
        "data_dir": data_dir,
        "job_backoff_base_seconds": 0.01,
        "job_backoff_max_seconds": 0.05,
        "worker_concurrency": 1,
    }
    values.update(overrides)
    return Settings(**values)


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture payload (``EVENT.ACTION``), deep-copied, with top-level keys replaced."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    data = copy.deepcopy(data)
    data.update(changes)
    return data


def pr_payload(name: str, *, head: str | None = None, draft: bool | None = None) -> dict[str, Any]:
    data = payload(name)
    if head is not None:
        data["pull_request"]["head"]["sha"] = head
    if draft is not None:
        data["pull_request"]["draft"] = draft
    return data


def pr_comment(body: object, association: str | None = "OWNER", **user: Any) -> dict[str, Any]:
    """``issue_comment.created`` on a pull request (GitHub marks those with issue.pull_request)."""
    data = payload("issue_comment.created")
    data["issue"]["pull_request"] = {
        "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"
    }
    data["comment"]["body"] = body
    data["comment"]["author_association"] = association
    data["comment"]["user"].update(user)
    return data


def delivery_headers(
    body: bytes, event: str, delivery_id: str | None = None, *, secret: str = SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }


async def deliver(
    client: httpx.AsyncClient,
    event: str,
    data: dict[str, Any],
    delivery_id: str | None = None,
) -> httpx.Response:
    body = json.dumps(data).encode()
    return await client.post(
        "/webhook", content=body, headers=delivery_headers(body, event, delivery_id)
    )


class RecordingHandler:
    """A job handler that records every job it ran; optionally fails or blocks."""

    def __init__(self, behaviour: Callable[[Job], Any] | None = None) -> None:
        self.jobs: list[Job] = []
        self.behaviour = behaviour
        self.ran = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        self.jobs.append(job)
        self.ran.set()
        if self.behaviour is not None:
            outcome = self.behaviour(job)
            if asyncio.iscoroutine(outcome):
                await outcome

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while len(self.jobs) < count:
                self.ran.clear()
                await self.ran.wait()

        await asyncio.wait_for(_wait(), timeout)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (queue, worker) started, and a client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


# ---- the real pipeline against the fake GitHub (test_service_e2e, test_tasks, test_replay) ----

# Sends a user message to a conversation without `run: true`: a critical finding on line 4.
SEND_WITHOUT_RUN = """\
import { ConversationClient } from "@openhands/typescript-client";

export async function send(client: ConversationClient, id: string, text: string) {
  await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] });
}
"""
SEND_LINE = 4
SEND_WITH_RUN = SEND_WITHOUT_RUN.replace("text }] });", "text }] }, { run: true });")
FINDING_MARKER = re.compile(r"<!-- reviewbot:finding fp=([0-9a-f]+) -->")
FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.SUPERSEDED})


def aimed(
    data: dict[str, Any], full_name: str, number: int, *, installation: int | None = 1
) -> dict[str, Any]:
    """A fixture payload pointed at one repository, pull request and App installation."""
    owner, _, name = full_name.partition("/")
    data["repository"]["name"] = name
    data["repository"]["full_name"] = full_name
    data["repository"]["owner"]["login"] = owner
    if installation is None:
        data.pop("installation", None)
    else:
        data["installation"] = {"id": installation}
    if "pull_request" in data:
        data["number"] = number
        data["pull_request"]["number"] = number
    if "issue" in data:
        data["issue"]["number"] = number
    return data


async def settled(queue: JobQueue, delivery_id: str, timeout: float = 10.0) -> list[JobRecord]:
    """The delivery's job records once none is pending or running any more."""

    async def poll() -> list[JobRecord]:
        while True:
            records = await queue.records(delivery_id)
            if records and all(record.status in FINISHED for record in records):
                return records
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


def open_pull(
    fake: FakeGitHub,
    full_name: str,
    number: int,
    *,
    base: str,
    head: str,
    files: dict[str, str],
) -> FakePull:
    """An open PR adding ``files`` on top of a base commit holding only a README."""
    fake.add_commit(full_name, base, {"README.md": "hello\n"})
    fake.add_commit(full_name, head, {"README.md": "hello\n", **files})
    added = [FakeFile.added(path, text) for path, text in files.items()]
    return fake.add_pull(full_name, FakePull(number, head, base, files=added))
