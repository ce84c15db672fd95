"""``reviewbot serve``, ``reviewbot worker`` and ``reviewbot replay``: the service commands.

Kept apart from ``cli.py`` so that ``reviewbot review`` does not import FastAPI or the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reviewbot.settings import Settings, SettingsError

EXIT_USAGE = 2
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024


def _settings() -> Settings | None:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        print(f"reviewbot: error: invalid configuration: {problems}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from reviewbot.service import serve

    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    try:
        serve(settings, args.host, args.port)
    except SettingsError as error:
        print(f"reviewbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _worker(args: argparse.Namespace) -> int:
    from reviewbot.service import work

    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    try:
        work(settings)
    except SettingsError as error:
        print(f"reviewbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _load_payload(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"{path} is larger than {MAX_PAYLOAD_BYTES} bytes")
        payload = json.loads(path.read_bytes())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error.msg} at line {error.lineno}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a JSON object")
    return payload


async def _replay_async(args: argparse.Namespace, settings: Settings) -> int:
    from reviewbot import events
    from reviewbot.github import GitHubError
    from reviewbot.jobs import PermanentJobError, TransientJobError
    from reviewbot.render import render_review, review_json, review_markdown
    from reviewbot.source import SourceError
    from reviewbot.tasks import Tasks

    payload = _load_payload(args.payload)
    event = events.Event(
        name=args.event, delivery_id=args.delivery or f"replay-{uuid.uuid4()}", payload=payload
    )
    try:
        routing = events.route(event, events.RouteContext.from_settings(settings))
    except events.PayloadError as error:
        raise ValueError(f"the payload does not fit a {args.event} event: {error}") from error
    if not routing.jobs:
        print(f"no job: {routing.reason}")
        return 0
    tasks = Tasks(settings)
    code = 0
    try:
        for job in routing.jobs:
            if not args.dry_run:
                done = await tasks.run(job)
                what = f"{job.kind} job for {job.full_name}#{job.number}"
                print(f"{what} skipped: {done.skipped}" if done.skipped else f"{what} posted")
                continue
            if job.kind != "review":
                print(f"{job.kind} job for {job.full_name}: only review jobs have a dry run")
                continue
            result = await tasks.review(job, dry_run=True)
            if result.outcome is None:
                print(f"skipped: {result.skipped}")
                continue
            review = result.outcome.review
            if args.format == "json":
                print(json.dumps(review_json(review), indent=2, ensure_ascii=False))
            else:
                sys.stdout.write(review_markdown(render_review(review)))
            if any(f.severity.value == "critical" for f in review.findings):
                code = 1
    except (GitHubError, SourceError, PermanentJobError, TransientJobError) as error:
        raise ValueError(str(error)) from error
    finally:
        await tasks.aclose()
    return code


def _replay(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    try:
        return asyncio.run(_replay_async(args, settings))
    except ValueError as error:
        print(f"reviewbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def add_parsers(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the webhook service (and its worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser("worker", help="process queued jobs without serving HTTP")
    worker.set_defaults(handler=_worker)

    replay = subparsers.add_parser("replay", help="run a saved webhook through the pipeline")
    replay.add_argument("payload", type=Path, help="the webhook's JSON body")
    replay.add_argument("--event", required=True, help="the X-GitHub-Event name")
    replay.add_argument("--delivery", help="the delivery id (default: a new one)")
    replay.add_argument("--dry-run", action="store_true", help="print the review, post nothing")
    replay.add_argument("--format", choices=("markdown", "json"), default="markdown")
    replay.set_defaults(handler=_replay)
