"""The ``reviewbot`` command line: serve, worker, review, replay, snapshots.

Exit codes are a contract other tools depend on: 0 no critical finding, 1 critical
findings, 2 bad usage or unreadable input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from reviewbot.models import Severity

EXIT_OK = 0
EXIT_CRITICAL = 1
EXIT_USAGE = 2

_PR_REF = re.compile(r"^(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)#(?P<number>\d+)$")
_PR_URL = re.compile(r"^https?://[^/]+/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/pulls?/(?P<number>\d+)")


class UsageError(Exception):
    """Bad arguments or unreadable input: exit 2 with one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage; the contract is one line.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_pr(value: str) -> tuple[str, str, int]:
    """``OWNER/REPO#N`` or a pull request URL."""
    match = _PR_REF.match(value.strip()) or _PR_URL.match(value.strip())
    if not match:
        raise UsageError(f"--pr must be OWNER/REPO#N or a pull request URL, not {value!r}")
    return match["owner"], match["repo"], int(match["number"])


def parse_now(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise UsageError(f"--now must be an ISO 8601 time, not {value!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _add_review(subparsers: Any) -> None:
    review = subparsers.add_parser("review", help="review a change and print the review")
    source = review.add_mutually_exclusive_group(required=True)
    source.add_argument("--repo", type=Path, help="a local git repository")
    source.add_argument("--patch", type=Path, help="a unified diff file")
    source.add_argument("--pr", help="OWNER/REPO#N or a pull request URL (needs GITHUB_TOKEN)")
    review.add_argument("--base", help="base ref (with --repo)")
    review.add_argument("--head", default="HEAD", help="head ref (with --repo; default HEAD)")
    review.add_argument("--format", choices=("markdown", "json"), default="markdown")
    review.add_argument("--now", help="ISO 8601 time to judge ages against (REVIEWBOT_NOW)")
    review.add_argument("--post", action="store_true", help="with --pr: post the review to GitHub")


def build_parser() -> _Parser:
    parser = _Parser(prog="reviewbot", description=__doc__.splitlines()[0])
    subparsers: Any = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_review(subparsers)
    from reviewbot import service_cli, snapshot_cli

    service_cli.add_parsers(subparsers)
    snapshot_cli.add_parser(subparsers)
    return parser


async def _review(args: argparse.Namespace) -> int:
    from reviewbot.github import GitHubError
    from reviewbot.source import SourceError

    try:
        return await _review_unchecked(args)
    except (SourceError, GitHubError) as error:
        # Unreadable input (a bad ref, a missing PR, GitHub down): one line, exit 2.
        raise UsageError(str(error)) from error


async def _review_unchecked(args: argparse.Namespace) -> int:
    from reviewbot.pipeline import analyse
    from reviewbot.registry import RegistryClient
    from reviewbot.render import render_review, review_json, review_markdown
    from reviewbot.settings import Settings
    from reviewbot.source import ChangeSource

    settings = Settings()
    now = parse_now(args.now) or settings.now
    source: ChangeSource
    if args.repo is not None:
        if not args.base:
            raise UsageError("--repo needs --base REF")
        from reviewbot.gitlocal import GitSource

        source = GitSource(args.repo, args.base, args.head)
    elif args.patch is not None:
        from reviewbot.patchfile import PatchSource

        source = PatchSource(args.patch)
    else:
        from reviewbot.publish import pr_source

        owner, repo, number = parse_pr(args.pr)
        source = await pr_source(settings, owner, repo, number)
    if args.post and args.pr is None:
        raise UsageError("--post only works with --pr")

    async with RegistryClient(settings.registry_config()) as registry:
        outcome = await analyse(source, registry=registry, now=now)

    rendered = render_review(outcome.review)
    if args.format == "json":
        print(json.dumps(review_json(outcome.review), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(review_markdown(rendered))
    if args.post:
        from reviewbot.publish import post_cli_review

        await post_cli_review(settings, source, outcome)
    critical = any(f.severity is Severity.CRITICAL for f in outcome.review.findings)
    return EXIT_CRITICAL if critical else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed in one line
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        if args.command == "review":
            return asyncio.run(_review(args))
        code: int = args.handler(args)
        return code
    except UsageError as error:
        print(f"reviewbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the CLI's one boundary: exit codes are a contract
        # A crash must not look like exit 1 ("critical findings") to the tools reading it.
        print(f"reviewbot: error: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_USAGE
