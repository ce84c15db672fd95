"""Helpers for the service tests: settings, payloads, signed deliveries, a recording handler."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from reviewbot.jobs import Job
from reviewbot.settings import Settings
from reviewbot.webhook import sign

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
