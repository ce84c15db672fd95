"""Rendered review markdown: golden files, limits and the JSON contract."""

from __future__ import annotations

from datetime import UTC, datetime

from reviewbot.models import (
    ChangedFile,
    ChangeSet,
    FileStatus,
    Finding,
    Guideline,
    Location,
    ReviewConfig,
    Severity,
)
from reviewbot.render import MAX_BODY_CHARS, render_review, review_json, review_markdown
from reviewbot.review import Analysis, compose, fold_inline
from tests.golden_files import assert_golden

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _changed(path: str) -> ChangedFile:
    added = {n: f"code {n}" for n in range(1, 21)}
    return ChangedFile(path=path, status=FileStatus.MODIFIED, added=added, visible=dict(added))


def _analysis(findings: list[Finding], **kwargs: object) -> Analysis:
    base: dict[str, object] = {
        "changeset": ChangeSet(
            base="1" * 40, head="2" * 40, files=[_changed("src/chat.ts"), _changed("package.json")]
        ),
        "findings": findings,
        "guidelines": [
            Guideline("conversation-send-missing-run", "skills/x.md", "builtin"),
            Guideline("custom <guide>", ".agents/skills/custom.md", "head"),
        ],
        "config": ReviewConfig(),
        "now": NOW,
    }
    base.update(kwargs)
    return Analysis(**base)  # type: ignore[arg-type]


FINDINGS = [
    Finding(
        "conversation-send-missing-run",
        Severity.CRITICAL,
        "src/chat.ts",
        12,
        "`sendEvent(id, msg)` posts to /events without `run: true`.",
        code="sendEvent(id, msg)",
    ),
    Finding(
        "dependency-too-fresh",
        Severity.CRITICAL,
        "package.json",
        None,
        "npm:left-pad@1.3.1 was published 2 hours ago <script>@someone</script>.",
        identity="npm:left-pad@1.3.1",
        also_at=(Location("package-lock.json", 40),),
    ),
    Finding(
        "local-stop-uses-pause",
        Severity.IMPORTANT,
        "src/chat.ts",
        18,
        "Stop uses `/pause`; use `/interrupt`.",
        code="pauseConversation(id)",
    ),
]


def test_review_with_findings_matches_golden() -> None:
    review = compose(
        _analysis(
            FINDINGS,
            incomplete=["pypi:foo@1.0: registry timed out"],
            notes=["The PR adds `rules: off` in .agents/skills/x.md; ignored until base has it."],
        )
    )
    rendered = render_review(review)
    assert_golden("review_findings.md", review_markdown(rendered))
    assert "<!-- reviewbot:review head=" + "2" * 40 + " -->" in rendered.body
    assert "<script>" not in rendered.body and "@\u200bsomeone" in rendered.body
    assert [c.line for c in rendered.comments] == [12, 18]
    assert all(f"fp={c.fingerprint}" in c.body for c in rendered.comments)


def test_clean_review_matches_golden_and_leaves_out_empty_sections() -> None:
    cs = ChangeSet(base="1" * 40, head="2" * 40, files=[_changed("tests/test_x.py")])
    body = render_review(compose(_analysis([], changeset=cs))).body
    assert_golden("review_clean.md", body)
    for section in ("[CRITICAL ISSUES]", "[IMPROVEMENT OPPORTUNITIES]", "[TESTING GAPS]"):
        assert section not in body
    assert "🟢 **Good taste**" in body and "✅ Worth merging" in body


def test_sections_come_in_the_contract_order() -> None:
    body = render_review(compose(_analysis(FINDINGS))).body
    order = [
        "Taste Rating",
        "Overview",
        "[CRITICAL ISSUES]",
        "[IMPROVEMENT OPPORTUNITIES]",
        "[TESTING GAPS]",
        "[RISK ASSESSMENT]",
        "VERDICT:",
        "KEY INSIGHT:",
        "Guidelines applied",
        "Improve this review?",
    ]
    positions = [body.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert ".agents/skills/custom-codereview-guide.md" in body and "/codereview" in body


def test_huge_review_stays_under_githubs_limit() -> None:
    many = [
        Finding("r", Severity.SUGGESTION, f"src/f{i}.ts", None, "x" * 400, code=str(i))
        for i in range(2000)
    ]
    body = render_review(compose(_analysis(many))).body
    assert len(body) <= MAX_BODY_CHARS
    assert "left out to keep this review under GitHub's size limit" in body


def test_folded_review_lists_inline_findings_with_markers() -> None:
    review = fold_inline(compose(_analysis(FINDINGS)))
    rendered = render_review(review)
    assert rendered.comments == ()
    for finding in FINDINGS:
        assert f"fp={finding.fingerprint}" in rendered.body


def test_json_contract_keys() -> None:
    data = review_json(compose(_analysis(FINDINGS)))
    assert {
        "base",
        "head",
        "rating",
        "risk",
        "verdict",
        "event",
        "touches_conversation_api",
        "findings",
        "guidelines",
        "notes",
    } <= set(data)
    assert data["rating"] == "needs_improvement" and data["event"] == "COMMENT"
    first = data["findings"][0]  # type: ignore[index]
    assert {"rule", "severity", "path", "line", "message", "fingerprint"} <= set(first)
    assert data["guidelines"][1] == {  # type: ignore[index]
        "name": "custom <guide>",
        "path": ".agents/skills/custom.md",
        "source": "head",
    }
