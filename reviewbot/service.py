"""Start the service for real: the app wired to the review tasks, under uvicorn.

``app.create_app`` takes its job handler as an argument so tests can drive it with fakes;
this module is where the production handler (``tasks.Tasks``) is plugged in.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server

from reviewbot import app as app_module
from reviewbot import metrics
from reviewbot.github import GitHubError, GitHubGateway
from reviewbot.logs import configure_logging
from reviewbot.settings import Settings
from reviewbot.tasks import Tasks

log = logging.getLogger(__name__)

BOT_LOGIN_TIMEOUT_S = 15.0


async def resolve_bot_login(settings: Settings) -> Settings:
    """Fill ``bot_login`` from the App's slug when it is not configured.

    Without it re-requests of the bot and its own comments cannot be recognised, so a
    failure is logged loudly, but the service still starts.
    """
    if settings.bot_login or settings.app_problems():
        return settings
    gateway = GitHubGateway.for_app(
        settings.app_id or 0,
        settings.load_private_key() or "",
        base_url=settings.github_api_url,
        timeout_s=BOT_LOGIN_TIMEOUT_S,
    )
    try:
        login = await asyncio.wait_for(gateway.bot_login(), BOT_LOGIN_TIMEOUT_S)
    except (GitHubError, TimeoutError) as error:
        log.warning("could not read the App's slug (%s); set REVIEWBOT_BOT_LOGIN", error)
        return settings
    log.info("acting as %s", login)
    return settings.model_copy(update={"bot_login": login})


def build_service(settings: Settings) -> FastAPI:
    """The production app: webhook, queue and an in-process worker running the reviews."""
    tasks = Tasks(settings)
    return app_module.create_app(
        settings, handler=tasks.handle, on_give_up=tasks.give_up, on_shutdown=tasks.aclose
    )


def serve(settings: Settings, host: str, port: int) -> None:
    """``reviewbot serve``: run until SIGINT/SIGTERM."""
    configure_logging(
        log_format=settings.log_format, level=settings.log_level, secrets=settings.secret_values()
    )
    settings = asyncio.run(resolve_bot_login(settings))
    uvicorn.run(
        build_service(settings),
        host=host,
        port=port,
        log_config=None,  # keep our handlers: redaction and delivery ids on uvicorn's lines too
        server_header=False,
        timeout_graceful_shutdown=int(app_module.SHUTDOWN_GRACE_SECONDS) + 5,
    )


def work(settings: Settings) -> None:
    """``reviewbot worker``: process queued jobs until SIGINT/SIGTERM."""
    settings = asyncio.run(resolve_bot_login(settings))
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, registry=metrics.REGISTRY)
    tasks = Tasks(settings)
    app_module.work(settings, tasks.handle, on_give_up=tasks.give_up)
