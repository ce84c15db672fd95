"""Review composition: rating, risk, verdict/event agreement, inline placement."""

from __future__ import annotations

import pytest

from reviewbot.models import (
    ChangedFile,
    ChangeSet,
    FileStatus,
    Finding,
    Rating,
    ReviewConfig,
    ReviewEvent,
    Risk,
    Severity,
    Verdict,
)
from reviewbot.review import MAX_INLINE_COMMENTS, Analysis, compose, fold_inline


def changeset(*files: ChangedFile) -> ChangeSet:
    return ChangeSet(base="b" * 40, head="h" * 40, files=list(files))


def changed(path: str, lines: range = range(1, 11)) -> ChangedFile:
    added = {n: f"line {n}" for n in lines}
    return ChangedFile(path=path, status=FileStatus.MODIFIED, added=added, visible=dict(added))


def finding(
    severity: Severity, line: int | None = 3, path: str = "src/a.ts", code: str = "x"
) -> Finding:
    return Finding("some-rule", severity, path, line, f"{severity.value} thing", code=code)


def analysis(*findings: Finding, **kwargs: object) -> Analysis:
    defaults: dict[str, object] = {
        "changeset": changeset(changed("src/a.ts"), changed("src/a.test.ts")),
        "findings": list(findings),
        "guidelines": [],
        "config": ReviewConfig(),
    }
    defaults.update(kwargs)
    return Analysis(**defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("severities", "incomplete", "rating", "risk", "verdict", "event"),
    [
        ([], [], Rating.GOOD, Risk.LOW, Verdict.WORTH_MERGING, ReviewEvent.APPROVE),
        (
            [Severity.SUGGESTION],
            [],
            Rating.GOOD,
            Risk.LOW,
            Verdict.WORTH_MERGING,
            ReviewEvent.APPROVE,
        ),
        (
            [Severity.IMPORTANT],
            [],
            Rating.ACCEPTABLE,
            Risk.MEDIUM,
            Verdict.WORTH_MERGING,
            ReviewEvent.COMMENT,
        ),
        (
            [Severity.CRITICAL, Severity.SUGGESTION],
            [],
            Rating.NEEDS_IMPROVEMENT,
            Risk.HIGH,
            Verdict.NEEDS_REWORK,
            ReviewEvent.COMMENT,
        ),
        (
            [],
            ["x.py: too large to parse"],
            Rating.ACCEPTABLE,
            Risk.MEDIUM,
            Verdict.WORTH_MERGING,
            ReviewEvent.COMMENT,
        ),
        (
            [Severity.SUGGESTION],
            ["registry down"],
            Rating.ACCEPTABLE,
            Risk.MEDIUM,
            Verdict.WORTH_MERGING,
            ReviewEvent.COMMENT,
        ),
    ],
)
def test_rating_risk_verdict_event(
    severities: list[Severity],
    incomplete: list[str],
    rating: Rating,
    risk: Risk,
    verdict: Verdict,
    event: ReviewEvent,
) -> None:
    findings = [finding(s, code=str(i)) for i, s in enumerate(severities)]
    review = compose(analysis(*findings, incomplete=incomplete))
    assert (review.rating, review.risk, review.verdict, review.event) == (
        rating,
        risk,
        verdict,
        event,
    )
    assert set(incomplete) <= set(review.notes)


def test_changeset_notes_make_the_review_incomplete() -> None:
    cs = changeset(changed("src/a.ts"))
    cs.notes.append("GitHub lists at most 3,000 files")
    review = compose(analysis(changeset=cs))
    assert review.rating is Rating.ACCEPTABLE
    assert "GitHub lists at most 3,000 files" in review.notes


@pytest.mark.parametrize(
    ("config", "rating", "event"),
    [
        (ReviewConfig(approve=False), Rating.GOOD, ReviewEvent.COMMENT),
        (ReviewConfig(request_changes=True), Rating.NEEDS_IMPROVEMENT, ReviewEvent.REQUEST_CHANGES),
        (ReviewConfig(request_changes=True), Rating.GOOD, ReviewEvent.APPROVE),
    ],
)
def test_event_policy_from_guidelines(
    config: ReviewConfig, rating: Rating, event: ReviewEvent
) -> None:
    findings = [finding(Severity.CRITICAL)] if rating is Rating.NEEDS_IMPROVEMENT else []
    review = compose(analysis(*findings, config=config))
    assert review.rating is rating and review.event is event
    # The words never disagree with the event.
    if review.event is ReviewEvent.APPROVE:
        assert review.verdict is Verdict.WORTH_MERGING
    if review.event is ReviewEvent.REQUEST_CHANGES:
        assert review.verdict is Verdict.NEEDS_REWORK


def test_rule_off_and_severity_override() -> None:
    config = ReviewConfig(rule_severity={"some-rule": Severity.CRITICAL, "other": "off"})
    other = Finding("other", Severity.CRITICAL, "src/a.ts", 1, "gone")
    review = compose(analysis(finding(Severity.SUGGESTION), other, config=config))
    assert [(f.rule, f.severity) for f in review.findings] == [("some-rule", Severity.CRITICAL)]
    assert review.rating is Rating.NEEDS_IMPROVEMENT


def test_inline_only_on_diff_lines_and_capped() -> None:
    outside = finding(Severity.CRITICAL, line=99, code="outside")
    no_line = finding(Severity.CRITICAL, line=None, code="noline")
    many = [finding(Severity.SUGGESTION, line=1 + i % 10, code=f"c{i}") for i in range(40)]
    review = compose(analysis(outside, no_line, *many))
    assert len(review.inline) == MAX_INLINE_COMMENTS
    assert outside in review.body_only and no_line in review.body_only
    assert len(review.inline) + len(review.body_only) == 42
    assert all(f.line in range(1, 11) for f in review.inline)


def test_previous_fingerprints_are_not_repeated_and_gone_ones_resolved() -> None:
    kept = finding(Severity.CRITICAL, code="kept")
    new = finding(Severity.IMPORTANT, code="new")
    review = compose(
        analysis(kept, new, previous_fingerprints=frozenset({kept.fingerprint, "deadbeef"}))
    )
    assert review.still_open == (kept,)
    assert review.inline == (new,)
    assert review.resolved == ("deadbeef",)


def test_fingerprint_ignores_line_numbers_and_whitespace() -> None:
    a = Finding("r", Severity.CRITICAL, "p.ts", 3, "m", code="sendEvent(id,  msg)")
    b = Finding("r", Severity.CRITICAL, "p.ts", 40, "m", code="sendEvent(id, msg)\n")
    c = Finding("r", Severity.CRITICAL, "q.ts", 3, "m", code="sendEvent(id, msg)")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_testing_gaps_only_without_test_changes() -> None:
    without_tests = compose(
        analysis(changeset=changeset(changed("src/a.ts"), changed("README.md")))
    )
    assert without_tests.testing_gaps == ("src/a.ts",)
    with_tests = compose(analysis())
    assert with_tests.testing_gaps == ()


def test_fold_inline_moves_everything_to_the_body() -> None:
    review = compose(analysis(finding(Severity.CRITICAL), finding(Severity.SUGGESTION, code="y")))
    assert review.inline
    folded = fold_inline(review)
    assert folded.inline == () and len(folded.body_only) == 2
    assert folded.body_only[0].severity is Severity.CRITICAL
