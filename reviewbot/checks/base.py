"""What every check receives and returns, and the helpers they share.

A check is a plain function ``CheckContext -> CheckResult`` wrapped in a ``Check`` with its
rule ids. It never does I/O: whatever it needs from outside (registry publish times) the
pipeline fetched beforehand and put on the context.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reviewbot.diff import partial_text
from reviewbot.models import (
    ChangedFile,
    ChangeSet,
    CheckResult,
    FileStatus,
    Package,
    PublishTime,
    ReviewConfig,
    Severity,
)

# Files bigger than this are not parsed; the review says so instead of stalling.
MAX_PARSE_BYTES = 1_000_000

_TEST_DIRS = {"__tests__", "tests", "test", "mocks", "__mocks__", "e2e"}


def is_test_path(path: str) -> bool:
    """Test files and mocks mention endpoints without calling them for real."""
    # Plain string splitting: this runs for every changed file of every rule (PurePosixPath
    # was a measurable share of a 2,000-file review).
    parts = [part for part in path.split("/") if part and part != "."]
    name = parts[-1] if parts else path
    if any(part in _TEST_DIRS for part in parts[:-1]):
        return True
    if ".test." in name or ".spec." in name:
        return True
    return (name.startswith("test_") and name.endswith(".py")) or name.endswith("_test.py")


def matches_any(path: str, globs: tuple[str, ...]) -> bool:
    """fnmatch, plus ``dir/**`` meaning everything below ``dir``."""
    for pattern in globs:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        if pattern.endswith("/**") and path.startswith(pattern[:-2]):
            return True
    return False


@dataclass(frozen=True)
class SourceFile:
    """A changed file a structural check should parse, with the text to parse."""

    changed: ChangedFile
    text: str
    partial: bool

    @property
    def path(self) -> str:
        return self.changed.path


@dataclass
class CheckContext:
    changeset: ChangeSet
    config: ReviewConfig = field(default_factory=ReviewConfig)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Filled by the pipeline from the registry before checks run (no I/O in checks).
    publish_times: Mapping[Package, PublishTime] = field(default_factory=dict)

    def files(self, *, skip_tests: bool = False) -> Iterator[ChangedFile]:
        """Changed files still present at head, minus ignored paths (and tests if asked)."""
        for changed in self.changeset.files:
            if changed.status is FileStatus.DELETED or changed.is_binary:
                continue
            if matches_any(changed.path, self.config.ignore_paths):
                continue
            if skip_tests and not self.config.include_tests and is_test_path(changed.path):
                continue
            yield changed

    def sources(self, suffixes: tuple[str, ...], *, skip_tests: bool) -> Iterator[SourceFile]:
        """Changed files with one of ``suffixes`` and text to parse (whole or rebuilt)."""
        for changed in self.files(skip_tests=skip_tests):
            if not changed.path.endswith(suffixes) or not changed.added:
                continue
            if changed.head_text is not None and not changed.head_is_partial:
                yield SourceFile(changed, changed.head_text, partial=False)
            else:
                yield SourceFile(changed, partial_text(changed), partial=True)


CheckFunction = Callable[[CheckContext], CheckResult]


@dataclass(frozen=True)
class Check:
    """A registered rule: its id(s), what it is about, and the function that runs it."""

    rule: str
    title: str
    run: CheckFunction
    # The most severe level each rule id it emits can reach (first: ``rule`` itself). The
    # guideline merge uses it to tell a PR raising a severity from one lowering it.
    severities: Mapping[str, Severity] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[str, ...]:
        return (self.rule, *(rule for rule in self.severities if rule != self.rule))
