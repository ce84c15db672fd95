"""The webhook endpoint through the real ASGI app: status mapping, redelivery, coalescing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from reviewbot import webhook
from reviewbot.app import create_app, run_worker
from reviewbot.events import Event, RouteContext, Router, Skip
from reviewbot.jobs import Job, JobStatus, QueueError
from reviewbot.logs import record_context, uninstall_redaction
from reviewbot.settings import SettingsError
from reviewbot.sqlite_queue import SqliteJobQueue
from reviewbot.worker import Worker
from tests.helpers_service import (
    SECRET,
    RecordingHandler,
    deliver,
    delivery_headers,
    make_settings,
    payload,
    pr_payload,
    running,
)


@pytest.fixture(autouse=True)
def _no_logging_state_leaks() -> Iterator[None]:
    # create_app installs process-wide log redaction; leave other test modules a clean slate.
    yield
    uninstall_redaction()


# ---- the pure pieces -------------------------------------------------------------------------


def test_sign_matches_githubs_documented_example() -> None:
    # From GitHub's "Validating webhook deliveries" page.
    assert (
        webhook.sign("It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        webhook.sign("another secret", b"{}"),
        webhook.sign(SECRET, b"{} "),  # signature of a different body
        "sha256=ünïcode",
    ],
)
def test_verify_signature_rejects(header: str | None) -> None:
    with pytest.raises(webhook.WebhookError) as caught:
        webhook.verify_signature(SecretStr(SECRET), b"{}", header)
    assert caught.value.status == 401


def test_verify_signature_accepts_exact_hmac() -> None:
    webhook.verify_signature(SecretStr(SECRET), b"{}", webhook.sign(SECRET, b"{}"))


def test_without_secret_only_insecure_dev_passes() -> None:
    with pytest.raises(webhook.WebhookError) as caught:
        webhook.verify_signature(None, b"{}", None)
    assert caught.value.status == 401
    webhook.verify_signature(None, b"{}", None, insecure_dev=True)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_read_body_bounds_declared_and_streamed_sizes() -> None:
    assert await webhook.read_body({}, _chunks(b"ab", b"cd"), 4) == b"abcd"
    with pytest.raises(webhook.WebhookError) as declared:
        await webhook.read_body({"content-length": "5"}, _chunks(), 4)
    assert declared.value.status == 413
    with pytest.raises(webhook.WebhookError) as streamed:
        # A lying (small) Content-Length does not get past the streamed bound.
        await webhook.read_body({"content-length": "1"}, _chunks(b"abc", b"de"), 4)
    assert streamed.value.status == 413
    with pytest.raises(webhook.WebhookError) as invalid:
        await webhook.read_body({"content-length": "-1"}, _chunks(), 4)
    assert invalid.value.status == 400


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"x-github-delivery": "d1"}, b"{}", "missing X-GitHub-Event"),
        ({"x-github-event": "push"}, b"{}", "missing X-GitHub-Delivery"),
        (
            {"x-github-event": "push", "x-github-delivery": "a b\n"},
            b"{}",
            "invalid X-GitHub-Delivery",
        ),
        ({"x-github-event": "Push!", "x-github-delivery": "d1"}, b"{}", "invalid X-GitHub-Event"),
        ({"x-github-event": "push", "x-github-delivery": "d1"}, b"{not json", "not JSON"),
        ({"x-github-event": "push", "x-github-delivery": "d1"}, b"\xff\xfe", "not JSON"),
        ({"x-github-event": "push", "x-github-delivery": "d1"}, b"[1, 2]", "not a JSON object"),
        ({"x-github-event": "push", "x-github-delivery": "d1"}, b"[" * 100_000, "not JSON"),
    ],
)
def test_parse_event_rejects(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(webhook.WebhookError) as caught:
        webhook.parse_event(headers, body)
    assert caught.value.status == 400
    assert reason in caught.value.reason


# ---- through the app -------------------------------------------------------------------------


async def test_ping_is_pong(tmp_path: Path) -> None:
    handler = RecordingHandler()
    async with running(create_app(make_settings(tmp_path), handler=handler)) as client:
        response = await deliver(client, "ping", payload("ping"))
    assert response.status_code == 200
    assert response.json() == {"status": "pong"}
    assert handler.jobs == []


async def test_missing_and_bad_signatures_are_401_and_queue_nothing(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    body = json.dumps(pr_payload("pull_request.opened")).encode()
    async with running(app) as client:
        headers = delivery_headers(body, "pull_request")
        unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        missing = await client.post("/webhook", content=body, headers=unsigned)
        forged = await client.post(
            "/webhook",
            content=body,
            headers=delivery_headers(body, "pull_request", secret="wrong-secret-123"),
        )
        tampered = await client.post("/webhook", content=body + b" ", headers=headers)
        depth = await app.state.queue.depth()
    for response in (missing, forged, tampered):
        assert response.status_code == 401
        assert "error" in response.json()
    assert depth == 0


async def test_signature_is_checked_before_parsing(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    async with running(app) as client:
        # Not JSON and no delivery id: an unsigned request learns nothing about either.
        response = await client.post(
            "/webhook", content=b"{broken", headers={"X-GitHub-Event": "push"}
        )
    assert response.status_code == 401


async def test_oversize_body_is_413(tmp_path: Path) -> None:
    handler = RecordingHandler()
    app = create_app(make_settings(tmp_path, max_body_bytes=1024), handler=handler)
    big = json.dumps({"zen": "x" * 2000}).encode()
    async with running(app) as client:
        declared = await client.post("/webhook", content=big, headers=delivery_headers(big, "ping"))

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 100):
                yield big[start : start + 100]

        # Chunked: no Content-Length, only the streamed bound can stop it.
        chunked = await client.post(
            "/webhook", content=stream(), headers=delivery_headers(big, "ping")
        )
    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert handler.jobs == []


async def test_default_limit_is_githubs_25_mb(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    async with running(app) as client:
        response = await client.post(
            "/webhook",
            content=b"{}",
            headers={"Content-Length": str(25 * 1024 * 1024 + 1), "X-GitHub-Event": "ping"},
        )
    assert response.status_code == 413


async def test_malformed_json_is_400(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    async with running(app) as client:
        for body in (b"{not json", b'"a string"', b"null"):
            response = await client.post(
                "/webhook", content=body, headers=delivery_headers(body, "pull_request")
            )
            assert response.status_code == 400, body
            assert "JSON" in response.json()["error"]


async def test_missing_delivery_id_is_400(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    body = json.dumps(pr_payload("pull_request.opened")).encode()
    headers = delivery_headers(body, "pull_request")
    del headers["X-GitHub-Delivery"]
    async with running(app) as client:
        response = await client.post("/webhook", content=body, headers=headers)
    assert response.status_code == 400
    assert "X-GitHub-Delivery" in response.json()["error"]


async def test_payload_missing_needed_fields_is_400(tmp_path: Path) -> None:
    data = pr_payload("pull_request.opened")
    del data["pull_request"]["head"]
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    async with running(app) as client:
        response = await deliver(client, "pull_request", data)
    assert response.status_code == 400
    assert "pull_request" in response.json()["error"]


@pytest.mark.parametrize(
    ("event", "data", "reason"),
    [
        ("push", {"ref": "refs/heads/main"}, "event push is not handled"),
        ("pull_request", payload("pull_request.closed"), "pull_request.closed is not handled"),
        ("installation", payload("installation.created"), "nothing to review"),
        ("pull_request", pr_payload("pull_request.opened", draft=True), "draft"),
    ],
)
async def test_events_without_work_are_202_with_reason(
    tmp_path: Path, event: str, data: dict[str, Any], reason: str
) -> None:
    handler = RecordingHandler()
    app = create_app(make_settings(tmp_path), handler=handler, run_worker=False)
    async with running(app) as client:
        response = await deliver(client, event, data)
        depth = await app.state.queue.depth()
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert reason in response.json()["reason"]
    assert depth == 0


async def test_delivery_is_queued_and_run(tmp_path: Path) -> None:
    handler = RecordingHandler()
    app = create_app(make_settings(tmp_path), handler=handler)
    data = pr_payload("pull_request.opened")
    async with running(app) as client:
        response = await deliver(client, "pull_request", data, "delivery-1")
        await handler.wait_for(1)
        for _ in range(100):  # the queue records "done" right after the handler returns
            if await app.state.queue.is_done("delivery-1"):
                break
            await asyncio.sleep(0.01)
        done = await app.state.queue.is_done("delivery-1")
    assert response.status_code == 202
    assert response.json() == {"status": "queued"}
    [job] = handler.jobs
    assert (job.kind, job.trigger, job.delivery_id) == ("review", "auto", "delivery-1")
    assert (job.owner, job.repo, job.number) == ("Codertocat", "Hello-World", data["number"])
    assert job.head_sha == data["pull_request"]["head"]["sha"]
    assert job.installation_id == data["installation"]["id"]
    assert done


async def test_redelivery_runs_the_handler_once(tmp_path: Path) -> None:
    handler = RecordingHandler()
    app = create_app(make_settings(tmp_path), handler=handler)
    data = pr_payload("pull_request.opened")
    async with running(app) as client:
        first = await deliver(client, "pull_request", data, "same-delivery")
        queued_again = await deliver(client, "pull_request", data, "same-delivery")
        await handler.wait_for(1)
        while not await app.state.queue.is_done("same-delivery"):
            await asyncio.sleep(0.01)
        after_done = await deliver(client, "pull_request", data, "same-delivery")
        await asyncio.sleep(0.1)  # room for a wrong second run to show up
    assert first.status_code == 202
    for again in (queued_again, after_done):
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
    assert len(handler.jobs) == 1


async def test_redelivery_survives_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data = pr_payload("pull_request.opened")
    first_handler = RecordingHandler()
    async with running(create_app(settings, handler=first_handler)) as client:
        await deliver(client, "pull_request", data, "before-restart")
        await first_handler.wait_for(1)
    second_handler = RecordingHandler()
    async with running(create_app(settings, handler=second_handler)) as client:
        response = await deliver(client, "pull_request", data, "before-restart")
        await asyncio.sleep(0.1)
    assert response.json()["status"] == "duplicate"
    assert second_handler.jobs == []


async def test_coalescing_runs_only_the_newest_head(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    handler = RecordingHandler()
    # The worker is "paused": nothing runs until the three pushes are queued.
    app = create_app(settings, handler=handler, run_worker=False)
    heads = ["a" * 40, "b" * 40, "c" * 40]
    async with running(app) as client:
        answers = [
            await deliver(
                client,
                "pull_request",
                pr_payload("pull_request.synchronize", head=head),
                f"push-{i}",
            )
            for i, head in enumerate(heads)
        ]
        worker = Worker.from_settings(app.state.queue, handler, settings)
        ran = await worker.run_until_idle()
        records = [(await app.state.queue.records(f"push-{i}"))[0] for i in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 202]
    assert ran == 1
    assert [job.head_sha for job in handler.jobs] == [heads[-1]]
    assert [record.status for record in records] == [
        JobStatus.SUPERSEDED,
        JobStatus.SUPERSEDED,
        JobStatus.DONE,
    ]
    assert handler.jobs[0].extra["coalesced_deliveries"] == ["push-0", "push-1"]


async def test_requested_review_survives_coalescing_with_a_newer_push(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    handler = RecordingHandler()
    app = create_app(settings, handler=handler, run_worker=False)
    requested = pr_payload("pull_request.review_requested", head="a" * 40)
    requested["requested_reviewer"] = {"login": "ReviewBot[bot]", "id": 1, "type": "Bot"}
    async with running(app) as client:
        await deliver(client, "pull_request", requested, "request")
        await deliver(
            client, "pull_request", pr_payload("pull_request.synchronize", head="b" * 40), "push"
        )
        await Worker.from_settings(app.state.queue, handler, settings).run_until_idle()
    [job] = handler.jobs
    assert job.head_sha == "b" * 40
    assert job.trigger == "requested"  # the explicit request is not lost
    assert job.forced


async def test_queue_failure_is_503(tmp_path: Path) -> None:
    class BrokenQueue(SqliteJobQueue):
        def __init__(self, error: Exception) -> None:
            super().__init__(tmp_path / "jobs.sqlite3")
            self.error = error

        async def enqueue(self, job: Job) -> Any:
            raise self.error

    for error in (QueueError("disk full"), RuntimeError("surprise")):
        broken = BrokenQueue(error)
        app = create_app(make_settings(tmp_path), handler=RecordingHandler(), queue=broken)
        async with running(app) as client:
            response = await deliver(client, "pull_request", pr_payload("pull_request.opened"))
        await broken.close()  # a queue passed in stays the caller's to close
        assert response.status_code == 503
        assert response.json() == {"error": "queue unavailable"}


async def test_unexpected_error_is_500_without_a_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Router()

    @broken.register("pull_request")
    def explode(event: Event, context: RouteContext) -> Job | Skip:
        raise KeyError("internal detail")

    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), router=broken)
    with caplog.at_level(logging.ERROR):
        async with running(app) as client:
            response = await deliver(
                client, "pull_request", pr_payload("pull_request.opened"), "boom-1"
            )
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "internal detail" not in response.text
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record_context(record).delivery_id == "boom-1"
    assert "internal detail" in (record.exc_text or "")


async def test_healthz_and_readyz(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler())
    async with running(app) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        await app.state.queue.close()  # the store goes away under the running service
        unready = await client.get("/readyz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "queue_depth": 0}
    assert unready.status_code == 503
    assert "job store unusable" in unready.json()["problems"]


async def test_readyz_reports_a_worker_that_is_not_running(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler())
    async with running(app) as client:
        await app.state.worker.stop(1.0)
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert "worker not running" in response.json()["problems"]


def test_create_app_refuses_settings_without_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REVIEWBOT_WEBHOOK_SECRET"):
        create_app(make_settings(tmp_path, webhook_secret=None), handler=RecordingHandler())


async def test_insecure_dev_accepts_unsigned_deliveries(tmp_path: Path) -> None:
    handler = RecordingHandler()
    settings = make_settings(tmp_path, webhook_secret=None, insecure_dev=True)
    async with running(create_app(settings, handler=handler)) as client:
        response = await client.post(
            "/webhook",
            json=pr_payload("pull_request.opened"),
            headers={"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "dev-1"},
        )
        await handler.wait_for(1)
    assert response.status_code == 202


async def test_real_uvicorn_on_loopback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    handler = RecordingHandler()
    app = create_app(make_settings(tmp_path), handler=handler)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        body = json.dumps(pr_payload("pull_request.opened")).encode()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post(
                "/webhook", content=body, headers=delivery_headers(body, "pull_request", "e2e")
            )
            ready = await client.get("/readyz")
        await handler.wait_for(1)
    finally:
        server.should_exit = True
        await serving
    assert response.status_code == 202
    assert ready.status_code == 200
    assert handler.jobs[0].delivery_id == "e2e"
    # Even uvicorn's access line names the delivery.
    access = [
        r for r in caplog.records if r.name == "uvicorn.access" and "/webhook" in r.getMessage()
    ]
    assert [record_context(r).delivery_id for r in access] == ["e2e"]


async def test_standalone_worker_drains_what_the_service_queued(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # The web process only queues (no handler wired in it).
    async with running(create_app(settings)) as client:
        response = await deliver(client, "pull_request", pr_payload("pull_request.opened"), "w1")
    assert response.status_code == 202
    handler = RecordingHandler()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, handler, stop=stop))
    await handler.wait_for(1)
    stop.set()
    await worker
    assert [job.delivery_id for job in handler.jobs] == ["w1"]
