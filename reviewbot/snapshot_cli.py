"""The ``reviewbot snapshots compare`` command: compare snapshot folders, print the report.

Exit codes: 0 when snapshots match, are new, or their changes are acknowledged; 1 for
unacknowledged changes or removals; 2 for bad usage or unreadable directories (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NoReturn

from reviewbot import snapshots

COMMAND = "reviewbot snapshots compare"


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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``snapshots`` (with its ``compare`` subcommand) on the main CLI."""
    group = subparsers.add_parser("snapshots", help="compare visual snapshots")
    commands = group.add_subparsers(
        dest="snapshots_command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )
    compare = commands.add_parser(
        "compare",
        help="compare a baseline snapshot folder with the current one",
        description="Compare snapshot images by relative path and print a report.",
    )
    compare.add_argument("--baseline", required=True, type=Path, metavar="DIR")
    compare.add_argument("--current", required=True, type=Path, metavar="DIR")
    compare.add_argument(
        "--diff-dir", type=Path, metavar="DIR", help="write <name>-diff.png for changed images"
    )
    compare.add_argument(
        "--acknowledged", action="store_true", help="the changes are intended: exit 0"
    )
    compare.add_argument("--format", choices=("markdown", "json"), default="markdown")
    compare.add_argument(
        "--threshold",
        type=_threshold,
        default=snapshots.DEFAULT_THRESHOLD,
        help="largest per-channel colour change (0..1) that still counts as equal",
    )
    compare.add_argument(
        "--max-diff-pixels",
        type=_count,
        default=snapshots.DEFAULT_MAX_DIFF_PIXELS,
        metavar="INT",
        help="an image changes when more pixels than this differ",
    )
    compare.add_argument("--head", metavar="SHA", help="the commit the report describes")
    compare.add_argument(
        "--diff-base-url", metavar="URL", help="link diff images as URL/<relative diff path>"
    )
    compare.add_argument("--workers", type=_workers, metavar="N", help="parallel comparisons")
    # reviewbot.cli dispatches on ``args.handler``.
    group.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.snapshots_command != "compare":
        return _fail(f"unknown snapshots command {args.snapshots_command!r}")
    for flag, directory in (("--baseline", args.baseline), ("--current", args.current)):
        if not directory.is_dir():
            return _fail(f"{flag} directory not found: {directory}")
    try:
        # Validated before comparing, so a typo does not cost a whole run.
        snapshots.safe_base_url(args.diff_base_url)
    except ValueError as exc:
        return _fail(str(exc))
    if args.diff_dir is not None:
        if args.diff_dir.resolve() in (args.baseline.resolve(), args.current.resolve()):
            return _fail("--diff-dir must not be the baseline or current directory itself")
        try:
            args.diff_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"cannot create --diff-dir {args.diff_dir}: {exc.strerror or exc}")
    options = snapshots.CompareOptions(
        threshold=args.threshold, max_diff_pixels=args.max_diff_pixels
    )
    try:
        result = snapshots.compare_dirs(
            args.baseline,
            args.current,
            options=options,
            diff_dir=args.diff_dir,
            acknowledged=args.acknowledged,
            workers=args.workers,
        )
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


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``reviewbot`` with only the snapshots command), for tests."""
    parser = _OneLineParser(prog="reviewbot")
    add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


def _fail(message: str) -> int:
    sys.stderr.write(f"{COMMAND}: error: {message}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
