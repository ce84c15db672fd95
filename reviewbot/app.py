"""Own the wiring of the webhook service: routes, lifespan, queue and in-process worker.

``create_app`` is the only place the parts meet. ``POST /webhook`` only verifies, routes,
enqueues and answers — GitHub gives up on a delivery after 10 s and never resends it by itself
— and everything slow happens in the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

from reviewbot import events, metrics, webhook
from reviewbot.jobs import EnqueueStatus, GiveUpHandler, JobHandler, JobQueue
from reviewbot.logs import configure_logging, install_redaction, log_context
from reviewbot.settings import Settings
from reviewbot.sqlite_queue import SqliteJobQueue
from reviewbot.worker import Worker

logger = logging.getLogger(__name__)

# Well inside GitHub's 10 s: a store this slow is answered 503 rather than timed out.
ENQUEUE_TIMEOUT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 2.0
# Running jobs get this long to finish on shutdown before they are released to the queue.
SHUTDOWN_GRACE_SECONDS = 20.0


def make_queue(settings: Settings) -> JobQueue:
    """The job store the settings name: Redis when a queue URL is set, else the embedded file.

    Touches no network: a server started while Redis is down answers 503 until it is back.
    """
    if settings.queue_url is not None:
        # Imported here: a single-process deployment never loads the Redis client.
        from reviewbot.redis_queue import RedisJobQueue

        return RedisJobQueue.from_settings(settings)
    return SqliteJobQueue.from_settings(settings)


def runs_worker_in_server(settings: Settings) -> bool:
    """Whether ``reviewbot serve`` also processes jobs.

    With the embedded store it does unless ``REVIEWBOT_RUN_WORKER=0``. With a shared queue the
    servers only verify and enqueue and ``reviewbot worker`` processes the jobs, so both scale
    on their own; ``REVIEWBOT_RUN_WORKER=1`` set explicitly still runs one in the server.
    """
    if settings.queue_url is None:
        return settings.run_worker
    return settings.run_worker and "run_worker" in settings.model_fields_set


class DeliveryLogContext:
    """Put the delivery id on every line logged while a request is handled.

    ASGI middleware rather than a ``with`` in the endpoint, so that uvicorn's access line
    (written when the response starts) carries it too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", ())
            if key == b"x-github-delivery"
        }
        with log_context(delivery_id=webhook.safe_delivery_id(headers)):
            await self.app(scope, receive, send)


def _outcome(response: JSONResponse) -> str:
    """A delivery's outcome for metrics: the answer's status word, or its HTTP class."""
    try:
        status = json.loads(bytes(response.body)).get("status")
    except (ValueError, AttributeError):
        status = None
    if isinstance(status, str):
        return status
    return {400: "malformed", 401: "bad_signature", 413: "too_large", 503: "unavailable"}.get(
        response.status_code, "error"
    )


def _answer(status_code: int, **body: Any) -> JSONResponse:
    return JSONResponse(
        {key: value for key, value in body.items() if value is not None}, status_code
    )


def create_app(
    settings: Settings,
    *,
    handler: JobHandler | None = None,
    on_give_up: GiveUpHandler | None = None,
    queue: JobQueue | None = None,
    run_worker: bool | None = None,
    router: events.Router | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The service. ``handler`` runs each job (the review pipeline); without one, deliveries
    are queued but no in-process worker starts (a separate worker process may drain them).

    Raises ``SettingsError`` for settings the service must not run with.
    """
    settings.validate_for_service()
    install_redaction(settings.secret_values())
    owns_queue = queue is None
    job_queue = make_queue(settings) if queue is None else queue
    route_context = events.RouteContext.from_settings(settings)
    job_router = router or events.router
    start_worker = runs_worker_in_server(settings) if run_worker is None else run_worker
    worker = (
        Worker.from_settings(job_queue, handler, settings, on_give_up=on_give_up)
        if handler is not None and start_worker
        else None
    )
    if handler is None and start_worker:
        logger.warning("no job handler wired: deliveries are queued but not processed here")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await job_queue.open()
        pruned = await job_queue.prune()
        if pruned:
            logger.info("forgot %d finished jobs past the retention period", pruned)
        task = asyncio.create_task(worker.run()) if worker is not None else None
        app.state.worker_task = task
        try:
            yield
        finally:
            if worker is not None and task is not None:
                await worker.stop(SHUTDOWN_GRACE_SECONDS)
                await task
            app.state.worker_task = None
            if owns_queue:
                await job_queue.close()
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="reviewbot",
        lifespan=lifespan,
        # A webhook receiver publishes no API docs.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(DeliveryLogContext)
    app.state.settings = settings
    app.state.queue = job_queue
    app.state.worker = worker

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return _answer(200, status="ok")

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = [*settings.service_problems(), *settings.app_problems()]
        depth: int | None = None
        try:
            await asyncio.wait_for(job_queue.ping(), READY_TIMEOUT_SECONDS)
            depth = await asyncio.wait_for(job_queue.depth(), READY_TIMEOUT_SECONDS)
        except Exception as error:
            # Whatever the store raises, the answer is "not ready"; the log says why.
            logger.warning("readiness: job store unusable: %s", error)
            problems.append("job store unusable")
        task = getattr(app.state, "worker_task", None)
        if worker is not None and (task is None or task.done()):
            problems.append("worker not running")
        if problems:
            return _answer(503, status="unavailable", problems=problems)
        return _answer(200, status="ready", queue_depth=depth)

    @app.post("/webhook")
    async def receive(request: Request) -> JSONResponse:
        try:
            response = await _receive(request)
        except Exception:
            # The one boundary for the unexpected: a log line with the delivery id (from
            # the context), never a stack trace to the caller.
            logger.exception("webhook: unexpected error")
            response = _answer(500, error="internal error")
        metrics.DELIVERIES.labels(
            event=metrics.event_label(request.headers.get("x-github-event")),
            outcome=_outcome(response),
        ).inc()
        return response

    @app.get("/metrics")
    async def prometheus() -> Response:
        try:
            depth = await asyncio.wait_for(job_queue.depth(), READY_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("metrics: queue depth unavailable: %s", error)
        else:
            metrics.QUEUE_DEPTH.set(depth)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def _receive(request: Request) -> JSONResponse:
        try:
            body = await webhook.read_body(
                request.headers, request.stream(), settings.max_body_bytes
            )
            webhook.verify_signature(
                settings.webhook_secret,
                body,
                request.headers.get(webhook.SIGNATURE_HEADER),
                insecure_dev=settings.insecure_dev,
            )
            event = webhook.parse_event(request.headers, body)
            if event.name == "ping":
                logger.info("webhook: ping")
                return _answer(200, status="pong")
            routing = job_router.route(event, route_context)
        except webhook.WebhookError as error:
            logger.info("webhook: rejected with %d: %s", error.status, error.reason)
            return _answer(error.status, error=error.reason)
        except events.PayloadError as error:
            logger.warning(
                "webhook: malformed %s payload: %s", request.headers.get("x-github-event"), error
            )
            return _answer(400, error=f"malformed payload: {error}")

        label = f"{event.name}.{event.action}" if event.action else event.name
        if not routing.jobs:
            logger.info("webhook: %s ignored: %s", label, routing.reason)
            return _answer(202, status="ignored", reason=routing.reason)
        if settings.app_problems():
            # Queueing work that cannot be done would only end in failures; a 503 lets
            # GitHub show the delivery as failed, to redeliver once the App is configured.
            logger.warning("webhook: %s refused: the GitHub App is not configured", label)
            return _answer(503, error="GitHub App credentials are not configured")

        statuses: list[EnqueueStatus] = []
        for job in routing.jobs:
            with log_context(repo=job.full_name, pr=job.number, head=job.head_sha):
                try:
                    result = await asyncio.wait_for(job_queue.enqueue(job), ENQUEUE_TIMEOUT_SECONDS)
                except Exception:
                    # Whatever the store's failure, GitHub must hear "not accepted" (503) so
                    # the delivery shows as failed and can be redelivered.
                    logger.exception("webhook: %s could not be queued", label)
                    return _answer(503, error="queue unavailable")
                statuses.append(result.status)
                logger.info(
                    "webhook: %s → %s job %d (%s)%s",
                    label,
                    job.kind,
                    result.job_id,
                    result.status.value,
                    f"; superseded {', '.join(result.superseded)}" if result.superseded else "",
                )
        if all(status is EnqueueStatus.DUPLICATE for status in statuses):
            return _answer(200, status="duplicate", reason="delivery already recorded")
        return _answer(202, status="queued", reason=routing.reason or None)

    return app


async def run_worker(
    settings: Settings,
    handler: JobHandler,
    *,
    on_give_up: GiveUpHandler | None = None,
    queue: JobQueue | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Drain the queue without the HTTP service (``reviewbot worker``) until ``stop`` is set.

    Several such processes (and ``serve`` with its in-process worker) may share one data dir,
    or one Redis when ``REVIEWBOT_QUEUE_URL`` is set: claims are atomic across processes.
    """
    install_redaction(settings.secret_values())
    job_queue = make_queue(settings) if queue is None else queue
    stop = stop or asyncio.Event()
    await job_queue.open()
    worker = Worker.from_settings(job_queue, handler, settings, on_give_up=on_give_up)
    task = asyncio.create_task(worker.run())
    try:
        await stop.wait()
    finally:
        await worker.stop(SHUTDOWN_GRACE_SECONDS)
        await task
        if queue is None:
            await job_queue.close()


def work(
    settings: Settings, handler: JobHandler, *, on_give_up: GiveUpHandler | None = None
) -> None:
    """Run ``run_worker`` until SIGINT or SIGTERM, then stop gracefully."""
    configure_logging(
        log_format=settings.log_format, level=settings.log_level, secrets=settings.secret_values()
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, handler, on_give_up=on_give_up, stop=stop)

    asyncio.run(main())
