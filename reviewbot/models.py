"""Plain data that flows through the pipeline: change sets, findings, reviews.

Nothing here does I/O. Every other module of the pure core speaks in these types, so a
check, the review composer and the renderer can be tested with values built by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

Side = Literal["base", "head"]


class FileStatus(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"


@dataclass
class ChangedFile:
    """One file of a change set, as the diff shows it.

    ``added`` maps the new line number of every line the change adds to its text (without the
    line ending). ``head_text``/``base_text`` are the whole file at head/base when the source
    could read it; ``None`` means "not read" (patch input, binary, too large, deleted).
    """

    path: str
    status: FileStatus = FileStatus.MODIFIED
    old_path: str | None = None
    added: dict[int, str] = field(default_factory=dict)
    removed: dict[int, str] = field(default_factory=dict)
    # Every line the diff shows on the head side (added and context), by new line number.
    visible: dict[int, str] = field(default_factory=dict)
    is_binary: bool = False
    head_text: str | None = None
    base_text: str | None = None
    # Why the head text is missing or partial, e.g. "no patch from GitHub".
    note: str | None = None
    # True when head_text was rebuilt from the diff's hunks only (other lines are blank).
    head_is_partial: bool = False

    @property
    def base_path(self) -> str:
        return self.old_path or self.path

    @property
    def diff_lines(self) -> frozenset[int]:
        """Lines GitHub accepts review comments on (RIGHT side)."""
        return frozenset(self.visible)


@dataclass
class ChangeSet:
    """What a review looks at: two revisions and the files that differ between them."""

    base: str
    head: str
    files: list[ChangedFile] = field(default_factory=list)
    # Things the source could not give us (file cap, missing patches): the review is
    # incomplete and says so.
    notes: list[str] = field(default_factory=list)
    # Plain remarks about the input that do not make the review incomplete.
    info: list[str] = field(default_factory=list)
    title: str = ""
    # Every path present at head, when the source can list them (guidelines, tests).
    head_paths: tuple[str, ...] = ()

    def file(self, path: str) -> ChangedFile | None:
        for changed in self.files:
            if changed.path == path:
                return changed
        return None


class Severity(StrEnum):
    CRITICAL = "critical"
    IMPORTANT = "important"
    SUGGESTION = "suggestion"

    @property
    def rank(self) -> int:
        return {"critical": 0, "important": 1, "suggestion": 2}[self.value]

    @property
    def label(self) -> str:
        return {
            "critical": "🔴 Critical",
            "important": "🟠 Important",
            "suggestion": "🟡 Suggestion",
        }[self.value]


@dataclass(frozen=True)
class Location:
    path: str
    line: int | None = None


_SPACE = re.compile(r"\s+")


def fingerprint(rule: str, path: str, code: str) -> str:
    """A finding's identity across pushes: rule, file and the code itself, not its line.

    Whitespace is folded so that re-indenting or moving a block does not make an old finding
    look new to a re-review.
    """
    normalized = _SPACE.sub(" ", code).strip()
    digest = hashlib.sha256(f"{rule}\0{path}\0{normalized}".encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Finding:
    """One thing a check wants to say about one place in the change."""

    rule: str
    severity: Severity
    path: str
    line: int | None
    message: str
    # The code the finding is about; folded into the fingerprint instead of the line number.
    code: str = ""
    # Further places the same finding applies to (e.g. every file pinning a fresh version).
    also_at: tuple[Location, ...] = ()
    # Key the fingerprint on this instead of ``code`` when set (e.g. "npm:left-pad@1.3.0").
    identity: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.path, self.identity or self.code or self.message)

    def with_severity(self, severity: Severity) -> Finding:
        return Finding(
            rule=self.rule,
            severity=severity,
            path=self.path,
            line=self.line,
            message=self.message,
            code=self.code,
            also_at=self.also_at,
            identity=self.identity,
        )


@dataclass(frozen=True)
class CheckResult:
    """What a check returns: its findings, and what it could not check (never silent)."""

    findings: tuple[Finding, ...] = ()
    incomplete: tuple[str, ...] = ()


# ---- dependencies and registries -------------------------------------------------------


@dataclass(frozen=True, order=True)
class Package:
    """A released artefact: ecosystem ("npm", "pypi", ...), name and exact version."""

    ecosystem: str
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.ecosystem}:{self.name}@{self.version}"


@dataclass(frozen=True)
class PublishTime:
    """The registry's answer for one package: when it was published, or why we don't know."""

    package: Package
    published: datetime | None
    error: str | None = None


# ---- guidelines ------------------------------------------------------------------------


@dataclass(frozen=True)
class Guideline:
    name: str
    path: str
    source: Literal["head", "base", "builtin"]
    description: str = ""
    body: str = ""


@dataclass(frozen=True)
class PinMapping:
    """Read a version from a key in a JSON/YAML/TOML file and treat it as a package pin."""

    file: str
    key: str
    package: str  # "pypi:openhands-agent-server"


@dataclass(frozen=True)
class ReviewConfig:
    """The effective settings of one review, after base/head guideline merging."""

    rule_severity: Mapping[str, Severity | Literal["off"]] = field(default_factory=dict)
    min_age_days: float = 7.0
    exempt: tuple[str, ...] = ()
    pins: tuple[PinMapping, ...] = ()
    ignore_paths: tuple[str, ...] = ()
    include_tests: bool = False
    approve: bool = True
    request_changes: bool = False

    def enabled(self, rule: str) -> bool:
        return self.rule_severity.get(rule) != "off"


# ---- the review ------------------------------------------------------------------------


class Rating(StrEnum):
    GOOD = "good"
    ACCEPTABLE = "acceptable"
    NEEDS_IMPROVEMENT = "needs_improvement"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Verdict(StrEnum):
    WORTH_MERGING = "worth_merging"
    NEEDS_REWORK = "needs_rework"


class ReviewEvent(StrEnum):
    APPROVE = "APPROVE"
    COMMENT = "COMMENT"
    REQUEST_CHANGES = "REQUEST_CHANGES"


@dataclass(frozen=True)
class InlineComment:
    path: str
    line: int
    body: str
    fingerprint: str
    # First line of a multi-line comment; None (or == line) means a single-line comment.
    start_line: int | None = None


@dataclass(frozen=True)
class Review:
    base: str
    head: str
    rating: Rating
    risk: Risk
    verdict: Verdict
    event: ReviewEvent
    key_insight: str
    overview: str
    findings: tuple[Finding, ...]
    inline: tuple[Finding, ...]
    # Findings that belong in the body only (outside the diff, over the inline cap, repeated).
    body_only: tuple[Finding, ...]
    testing_gaps: tuple[str, ...]
    guidelines: tuple[Guideline, ...]
    notes: tuple[str, ...]
    touches_conversation_api: bool
    # Re-review bookkeeping: fingerprints already posted that still hold, and ones now gone.
    still_open: tuple[Finding, ...] = ()
    resolved: tuple[str, ...] = ()
    now: datetime | None = None
