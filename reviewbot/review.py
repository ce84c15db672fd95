"""Turn findings into a review: rating, risk, verdict, event, inline comments, key insight.

The rules are deliberately few and mechanical so that a reader of a review can predict it:
the worst finding decides the rating, an incomplete analysis is never rated good, and the
verdict and the event are derived from the rating together so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reviewbot.checks.base import is_test_path
from reviewbot.models import (
    ChangeSet,
    FileStatus,
    Finding,
    Guideline,
    Rating,
    Review,
    ReviewConfig,
    ReviewEvent,
    Risk,
    Severity,
    Verdict,
)

# GitHub shows a wall of inline comments badly; the rest are listed in the body.
MAX_INLINE_COMMENTS = 30

SOURCE_SUFFIXES = (
    ".py",
    ".ts",
    ".tsx",
    ".js",
    ".jsx",
    ".mjs",
    ".cjs",
    ".mts",
    ".cts",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
)

# One sentence per rule for the key insight; the most severe finding's rule speaks.
INSIGHTS: Mapping[str, str] = {
    "conversation-send-missing-run": (
        "A message posted to a conversation's /events without `run: true` is stored but never "
        "starts the agent, so the user waits forever."
    ),
    "local-stop-uses-pause": (
        "On a local agent-server `/pause` waits for the running LLM call to finish; "
        "`/interrupt` is what actually stops it."
    ),
    "dependency-too-fresh": (
        "Versions published only days ago have had no time to be vetted or yanked; "
        "wait until they are old enough."
    ),
    "dependency-unverifiable": (
        "Some dependency versions could not be checked against their registry, "
        "so their age is unknown."
    ),
}


@dataclass(frozen=True)
class Analysis:
    """Everything the pipeline learnt, before it becomes a review."""

    changeset: ChangeSet
    findings: Sequence[Finding]
    guidelines: Sequence[Guideline]
    config: ReviewConfig
    # What could not be checked: makes the review incomplete (never rated good).
    incomplete: Sequence[str] = ()
    # Plain remarks for the reader (ignored PR settings, patch-only input).
    notes: Sequence[str] = ()
    touches_conversation_api: bool = False
    previous_fingerprints: frozenset[str] = frozenset()
    now: datetime | None = None


def apply_config(findings: Iterable[Finding], config: ReviewConfig) -> list[Finding]:
    """Drop findings of rules switched off and apply severity overrides."""
    result: list[Finding] = []
    for finding in findings:
        setting = config.rule_severity.get(finding.rule)
        if setting == "off":
            continue
        if isinstance(setting, Severity):
            finding = finding.with_severity(setting)
        result.append(finding)
    return result


def _sort_key(finding: Finding) -> tuple[int, str, int]:
    return (finding.severity.rank, finding.path, finding.line or 0)


def rate(findings: Sequence[Finding], incomplete: bool) -> Rating:
    severities = {finding.severity for finding in findings}
    if Severity.CRITICAL in severities:
        return Rating.NEEDS_IMPROVEMENT
    if Severity.IMPORTANT in severities or incomplete:
        return Rating.ACCEPTABLE
    return Rating.GOOD


def assess_risk(findings: Sequence[Finding], incomplete: bool, touches_api: bool) -> Risk:
    severities = {finding.severity for finding in findings}
    if Severity.CRITICAL in severities:
        return Risk.HIGH
    if Severity.IMPORTANT in severities or incomplete or (touches_api and findings):
        return Risk.MEDIUM
    return Risk.LOW


def decide(rating: Rating, config: ReviewConfig) -> tuple[Verdict, ReviewEvent]:
    """Verdict and event from one place, so the words and the event never disagree."""
    if rating is Rating.NEEDS_IMPROVEMENT:
        event = ReviewEvent.REQUEST_CHANGES if config.request_changes else ReviewEvent.COMMENT
        return Verdict.NEEDS_REWORK, event
    if rating is Rating.GOOD and config.approve:
        return Verdict.WORTH_MERGING, ReviewEvent.APPROVE
    return Verdict.WORTH_MERGING, ReviewEvent.COMMENT


def testing_gaps(changeset: ChangeSet) -> list[str]:
    """Changed source files when the change touches no test at all."""
    live = [f for f in changeset.files if f.status is not FileStatus.DELETED and f.added]
    if any(is_test_path(f.path) for f in live):
        return []
    return sorted(f.path for f in live if f.path.endswith(SOURCE_SUFFIXES) and not f.is_binary)


def key_insight(findings: Sequence[Finding], incomplete: Sequence[str], files: int) -> str:
    if findings:
        top = findings[0]
        return INSIGHTS.get(top.rule, top.message.split(". ")[0].rstrip(".") + ".")
    if incomplete:
        return "Part of this change could not be checked, so a clean result here is not a pass."
    if files == 0:
        return "There is nothing to review: the change adds no lines."
    return "Nothing in this change trips the checks this repository asks for."


def overview(changeset: ChangeSet, findings: Sequence[Finding], touches_api: bool) -> str:
    added = sum(len(f.added) for f in changeset.files)
    removed = sum(len(f.removed) for f in changeset.files)
    counts = {severity: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity] += 1
    parts = [
        f"{len(changeset.files)} changed file{'s' if len(changeset.files) != 1 else ''} "
        f"(+{added} −{removed})",
    ]
    summary = (
        f"{counts[Severity.CRITICAL]} critical, {counts[Severity.IMPORTANT]} important, "
        f"{counts[Severity.SUGGESTION]} suggestion{'s' if counts[Severity.SUGGESTION] != 1 else ''}"
    )
    text = f"Reviewed {parts[0]}: {summary}."
    if touches_api:
        text += " The change talks to the agent-server conversation API."
    return text


def compose(analysis: Analysis) -> Review:
    changeset = analysis.changeset
    findings = sorted(apply_config(analysis.findings, analysis.config), key=_sort_key)
    incomplete = [*changeset.notes, *analysis.incomplete]
    rating = rate(findings, bool(incomplete))
    verdict, event = decide(rating, analysis.config)
    diff_lines = {f.path: f.diff_lines for f in changeset.files}

    inline: list[Finding] = []
    body_only: list[Finding] = []
    still_open: list[Finding] = []
    for finding in findings:
        if finding.fingerprint in analysis.previous_fingerprints:
            # Already said on this PR and still true: count it, don't repeat it inline.
            still_open.append(finding)
        elif (
            finding.line is not None
            and finding.line in diff_lines.get(finding.path, frozenset())
            and len(inline) < MAX_INLINE_COMMENTS
        ):
            inline.append(finding)
        else:
            body_only.append(finding)
    current = {finding.fingerprint for finding in findings}
    resolved = sorted(analysis.previous_fingerprints - current)

    return Review(
        base=changeset.base,
        head=changeset.head,
        rating=rating,
        risk=assess_risk(findings, bool(incomplete), analysis.touches_conversation_api),
        verdict=verdict,
        event=event,
        key_insight=key_insight(findings, incomplete, len(changeset.files)),
        overview=overview(changeset, findings, analysis.touches_conversation_api),
        findings=tuple(findings),
        inline=tuple(inline),
        body_only=tuple(body_only),
        testing_gaps=tuple(testing_gaps(changeset)),
        guidelines=tuple(analysis.guidelines),
        notes=tuple([*incomplete, *analysis.notes]),
        touches_conversation_api=analysis.touches_conversation_api,
        still_open=tuple(still_open),
        resolved=tuple(resolved),
        now=analysis.now,
    )


def fold_inline(review: Review) -> Review:
    """The same review with every inline comment moved into the body.

    GitHub rejects a whole review (422) when one comment does not sit on the diff; the
    second attempt posts everything in the body instead of losing it.
    """
    return replace(
        review, inline=(), body_only=tuple(sorted(review.inline + review.body_only, key=_sort_key))
    )
