"""The ``reviewbot snapshots`` commands: ``compare`` prints the report of two snapshot folders,
``report`` also posts it on a pull request (one comment, edited in place on every run).

Exit codes: 0 when snapshots match, are new, or their changes are acknowledged; 1 for
unacknowledged changes or removals; 2 for bad usage, unreadable directories, a missing
``GITHUB_TOKEN`` or a GitHub error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from reviewbot import snapshots

COMMAND = "reviewbot snapshots compare"
REPORT_COMMAND = "reviewbot snapshots report"
DEFAULT_API_URL = "https://api.github.com"
# Who GITHUB_TOKEN in GitHub Actions posts as; that token may not read GET /user (403).
ACTIONS_LOGIN = "github-actions[bot]"
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (CI logs show the reason, not a usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _workers(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, not {text}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _add_comparison_args(parser: argparse.ArgumentParser) -> None:
    """The flags ``compare`` and ``report`` share."""
    parser.add_argument("--baseline", required=True, type=Path, metavar="DIR")
    parser.add_argument("--current", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--diff-dir", type=Path, metavar="DIR", help="write <name>-diff.png for changed images"
    )
    parser.add_argument(
        "--acknowledged", action="store_true", help="the changes are intended: exit 0"
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=snapshots.DEFAULT_THRESHOLD,
        help="largest per-channel colour change (0..1) that still counts as equal",
    )
    parser.add_argument(
        "--max-diff-pixels",
        type=_count,
        default=snapshots.DEFAULT_MAX_DIFF_PIXELS,
        metavar="INT",
        help="an image changes when more pixels than this differ",
    )
    parser.add_argument(
        "--diff-base-url", metavar="URL", help="link diff images as URL/<relative diff path>"
    )
    parser.add_argument("--workers", type=_workers, metavar="N", help="parallel comparisons")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``snapshots`` (with ``compare`` and ``report``) on the main CLI."""
    group = subparsers.add_parser("snapshots", help="compare visual snapshots")
    commands = group.add_subparsers(
        dest="snapshots_command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )
    compare = commands.add_parser(
        "compare",
        help="compare a baseline snapshot folder with the current one",
        description="Compare snapshot images by relative path and print a report.",
    )
    _add_comparison_args(compare)
    compare.add_argument("--format", choices=("markdown", "json"), default="markdown")
    compare.add_argument("--head", metavar="SHA", help="the commit the report describes")

    report = commands.add_parser(
        "report",
        help="compare, print the report and post it on a pull request",
        description=(
            "Compare snapshot folders, print the report and post it on a pull request as one "
            "comment that later runs edit in place. Needs GITHUB_TOKEN; the API URL comes "
            f"from REVIEWBOT_GITHUB_API_URL (default {DEFAULT_API_URL})."
        ),
    )
    _add_comparison_args(report)
    report.add_argument("--repo", required=True, metavar="OWNER/REPO")
    report.add_argument("--pr", required=True, type=_positive, metavar="N")
    report.add_argument(
        "--head", metavar="SHA", help="the commit the report describes (default: the PR's head)"
    )
    report.add_argument(
        "--label",
        default=snapshots.ACK_LABEL,
        metavar="NAME",
        help=f"the label that acknowledges changes (default {snapshots.ACK_LABEL})",
    )
    report.add_argument(
        "--label-acknowledges",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a PR carrying --label counts as acknowledged (default: yes)",
    )
    report.add_argument(
        "--bot-login",
        metavar="LOGIN",
        help="who the token posts as (default: asked from GitHub; github-actions[bot] for "
        "an Actions token)",
    )
    # reviewbot.cli dispatches on ``args.handler``.
    group.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.snapshots_command == "compare":
        return _compare(args)
    if args.snapshots_command == "report":
        return _report(args)
    return _fail(f"unknown snapshots command {args.snapshots_command!r}")


def _check_comparison_args(args: argparse.Namespace) -> str | None:
    """Why the folders or flags cannot work, checked before any comparing (or posting)."""
    for flag, directory in (("--baseline", args.baseline), ("--current", args.current)):
        if not directory.is_dir():
            return f"{flag} directory not found: {directory}"
    try:
        # Validated before comparing, so a typo does not cost a whole run.
        snapshots.safe_base_url(args.diff_base_url)
    except ValueError as exc:
        return str(exc)
    if args.diff_dir is not None:
        if args.diff_dir.resolve() in (args.baseline.resolve(), args.current.resolve()):
            return "--diff-dir must not be the baseline or current directory itself"
        try:
            args.diff_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create --diff-dir {args.diff_dir}: {exc.strerror or exc}"
    return None


def _compare_folders(args: argparse.Namespace, acknowledged: bool) -> snapshots.SnapshotResult:
    options = snapshots.CompareOptions(
        threshold=args.threshold, max_diff_pixels=args.max_diff_pixels
    )
    return snapshots.compare_dirs(
        args.baseline,
        args.current,
        options=options,
        diff_dir=args.diff_dir,
        acknowledged=acknowledged,
        workers=args.workers,
    )


def _compare(args: argparse.Namespace) -> int:
    problem = _check_comparison_args(args)
    if problem is not None:
        return _fail(problem)
    try:
        result = _compare_folders(args, args.acknowledged)
    except snapshots.SnapshotError as exc:
        return _fail(str(exc))
    if args.format == "json":
        payload = result.to_json()
        payload["head"] = args.head
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(
            snapshots.render_report(
                result,
                head_sha=args.head,
                diff_base_url=args.diff_base_url,
                ack_hint="re-run with `--acknowledged`",
            )
        )
    return 1 if result.failed else 0


# ---- report: compare and post ------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from reviewbot.github import GitHubError
    from reviewbot.settings import _checked_base_url

    problem = _check_comparison_args(args)
    if problem is not None:
        return _fail(problem, REPORT_COMMAND)
    # "." and ".." would be resolved away in the URL path and aim our token elsewhere.
    if not _REPO.match(args.repo) or {".", ".."} & set(args.repo.split("/")):
        return _fail(f"--repo must be OWNER/REPO, not {args.repo!r}", REPORT_COMMAND)
    if not args.label.strip():
        return _fail("--label must not be empty", REPORT_COMMAND)
    token = os.environ.get("GITHUB_TOKEN", "").strip()
    if not token:
        return _fail("GITHUB_TOKEN is not set; it is needed to post the report", REPORT_COMMAND)
    try:
        base_url = _checked_base_url(
            os.environ.get("REVIEWBOT_GITHUB_API_URL") or DEFAULT_API_URL,
            "REVIEWBOT_GITHUB_API_URL",
        )
    except ValueError as exc:
        return _fail(str(exc), REPORT_COMMAND)
    try:
        return asyncio.run(_post_report(args, token, base_url))
    except snapshots.SnapshotError as exc:
        return _fail(str(exc), REPORT_COMMAND)
    except GitHubError as exc:
        return _fail(str(exc), REPORT_COMMAND)


async def _post_report(args: argparse.Namespace, token: str, base_url: str) -> int:
    from reviewbot.github import GitHubGateway

    owner, repo = args.repo.split("/")
    gateway = GitHubGateway.for_token(
        token, base_url=base_url, login=await _login(args, token, base_url)
    )
    pr = await gateway.pull_request(owner, repo, args.pr)
    labelled = args.label_acknowledges and args.label in pr.labels
    result = _compare_folders(args, args.acknowledged or labelled)
    hint = "re-run with `--acknowledged`"
    if args.label_acknowledges:
        label = args.label.replace("`", "")
        hint = f"add the `{label}` label to the pull request and run the snapshots again"
    body = snapshots.render_report(
        result,
        head_sha=args.head or pr.head_sha,
        diff_base_url=args.diff_base_url,
        ack_hint=hint,
    )
    # Printed before posting: if GitHub refuses the comment the log still has the report.
    sys.stdout.write(body)
    sys.stdout.flush()
    await gateway.upsert_marker_comment(owner, repo, args.pr, snapshots.MARKER, body)
    return 1 if result.failed else 0


async def _login(args: argparse.Namespace, token: str, base_url: str) -> str:
    """Who the token posts as: the existing comment is found by its author and marker."""
    from reviewbot.github import GitHubError, GitHubGateway

    if args.bot_login:
        return str(args.bot_login)
    probe = GitHubGateway.for_token(token, base_url=base_url)
    try:
        return await probe.bot_login()
    except GitHubError as error:
        # GitHub answers 403 to GET /user for the Actions token (an installation token).
        if error.status == 403:
            return ACTIONS_LOGIN
        raise


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``reviewbot`` with only the snapshots command), for tests."""
    parser = _OneLineParser(prog="reviewbot")
    add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


def _fail(message: str, command: str = COMMAND) -> int:
    sys.stderr.write(f"{command}: error: {message}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
