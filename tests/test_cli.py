"""`reviewbot review` end to end: real git repositories, patch files, a faked GitHub PR."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import respx

from reviewbot.cli import main
from tests.fakegithub import FakeFile, FakeGitHub, FakePull
from tests.fakeregistry import NPM, PYPI, FakeRegistry
from tests.gitrepo import GitRepo

NOW = "2026-11-26T12:00:00Z"

SEND_WITHOUT_RUN = """\
import { ConversationClient } from "@openhands/typescript-client";

export async function send(client: ConversationClient, id: string, text: string) {
  await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] });
}
"""

SEND_WITH_RUN = SEND_WITHOUT_RUN.replace("text }] });", "text }] }, { run: true });")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REVIEWBOT_NPM_REGISTRY_URL", NPM)
    monkeypatch.setenv("REVIEWBOT_PYPI_URL", PYPI)
    monkeypatch.setenv("REVIEWBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REVIEWBOT_NOW", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield FakeRegistry(router)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("src/chat.ts", "export const x = 1;\n")
    repo.write("tests/chat.test.ts", "test('x', () => {});\n")
    repo.write("package.json", json.dumps({"dependencies": {"left-pad": "1.3.0"}}, indent=2))
    repo.commit("base")
    repo.branch("feature")
    return repo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_critical_finding_exits_1_and_prints_body_then_inline_comments(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    head = repo.commit()
    code, out, _ = run(capsys, "review", "--repo", str(repo.path), "--base", "main", "--now", NOW)
    assert code == 1
    assert out.startswith(f"<!-- reviewbot:review head={head} -->")
    assert "🔴 **Needs improvement**" in out and "❌ Needs rework" in out
    body, _, inline = out.partition("#### Inline comment on `src/chat.ts:4`")
    assert "[CRITICAL ISSUES]" in body and "conversation-send-missing-run" in inline


def test_json_contract(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    head = repo.commit()
    code, out, _ = run(
        capsys, "review", "--repo", str(repo.path), "--base", "main", "--format", "json"
    )
    data = json.loads(out)
    assert code == 1
    assert data["head"] == head and data["base"] == repo.git("rev-parse", "main").strip()
    assert (data["rating"], data["risk"], data["verdict"], data["event"]) == (
        "needs_improvement",
        "high",
        "needs_rework",
        "COMMENT",
    )
    assert data["touches_conversation_api"] is True
    [finding] = data["findings"]
    assert {k: finding[k] for k in ("rule", "severity", "path", "line")} == {
        "rule": "conversation-send-missing-run",
        "severity": "critical",
        "path": "src/chat.ts",
        "line": 4,
    }
    assert isinstance(finding["message"], str) and len(finding["fingerprint"]) == 16
    assert {"name", "path", "source"} == set(data["guidelines"][0])
    assert isinstance(data["notes"], list)


def test_clean_change_exits_0_and_approves(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("src/chat.ts", SEND_WITH_RUN)
    repo.write("tests/chat.test.ts", "test('sends', () => {});\n")
    repo.commit()
    code, out, _ = run(
        capsys, "review", "--repo", str(repo.path), "--base", "main", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0
    assert (data["rating"], data["event"], data["findings"]) == ("good", "APPROVE", [])


def test_fresh_npm_dependency_is_critical_with_eligibility_date(
    repo: GitRepo, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.publish("npm", "left-pad", "1.3.1", datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    repo.write("package.json", json.dumps({"dependencies": {"left-pad": "1.3.1"}}, indent=2))
    repo.commit()
    code, out, _ = run(
        capsys,
        "review",
        "--repo",
        str(repo.path),
        "--base",
        "main",
        "--format",
        "json",
        "--now",
        NOW,
    )
    data = json.loads(out)
    assert code == 1
    [finding] = data["findings"]
    assert finding["rule"] == "dependency-too-fresh" and finding["path"] == "package.json"
    assert "left-pad" in finding["message"] and "1.3.1" in finding["message"]
    assert "about 2 hours" in finding["message"]
    assert "2026-12-03" in finding["message"]  # eligible: upload time + 7 days


def test_registry_failure_is_unverifiable_never_green(
    repo: GitRepo, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("package.json", json.dumps({"dependencies": {"left-pad": "9.9.9"}}, indent=2))
    repo.commit()
    code, out, _ = run(
        capsys, "review", "--repo", str(repo.path), "--base", "main", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0
    assert [f["rule"] for f in data["findings"]] == ["dependency-unverifiable"]
    assert data["rating"] != "good" and data["event"] != "APPROVE"


def test_guideline_relaxation_added_by_the_pr_is_ignored(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    relax = (
        "---\nname: relax\ntriggers: [/codereview]\nreviewbot:\n  rules:\n"
        "    conversation-send-missing-run: off\n---\nWe trust our sends.\n"
    )
    repo.write(".agents/skills/relax.md", relax)
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    repo.commit()
    _, out, _ = run(
        capsys, "review", "--repo", str(repo.path), "--base", "main", "--format", "json"
    )
    data = json.loads(out)
    assert [f["rule"] for f in data["findings"]] == ["conversation-send-missing-run"]
    assert any(
        "relax.md" in note and "conversation-send-missing-run" in note for note in data["notes"]
    )
    assert {"name": "relax", "path": ".agents/skills/relax.md", "source": "head"} in data[
        "guidelines"
    ]


def test_guideline_relaxation_present_on_base_applies(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    relax = (
        "---\nname: relax\ntriggers: [/codereview]\nreviewbot:\n  rules:\n"
        "    conversation-send-missing-run: off\n---\n"
    )
    repo.checkout("main")
    repo.write(".agents/skills/relax.md", relax)
    repo.commit("base guideline")
    repo.checkout("feature")
    repo.git("merge", "-q", "main")
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    repo.commit()
    code, out, _ = run(
        capsys, "review", "--repo", str(repo.path), "--base", "main", "--format", "json"
    )
    assert code == 0 and json.loads(out)["findings"] == []


def test_patch_source(repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    repo.commit()
    patch = tmp_path / "change.patch"
    patch.write_text(repo.git("format-patch", "-1", "--stdout"))
    code, out, _ = run(capsys, "review", "--patch", str(patch), "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert [(f["rule"], f["line"]) for f in data["findings"]] == [
        ("conversation-send-missing-run", 4)
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["review"], "one of the arguments --repo --patch --pr is required"),
        (["review", "--repo", "."], "--repo needs --base"),
        (["review", "--repo", ".", "--patch", "x"], "not allowed with argument"),
        (["review", "--patch", "/nonexistent.diff"], "cannot read"),
        (["review", "--repo", "/nonexistent", "--base", "main"], "not a git repository"),
        (["review", "--pr", "not a pr"], "--pr must be OWNER/REPO#N"),
        (["review", "--pr", "o/r#1"], "GITHUB_TOKEN is not set"),
        (["review", "--patch", "x", "--now", "yesterday"], "--now must be an ISO 8601"),
        (["review", "--patch", "x", "--format", "xml"], "invalid choice"),
        (["review", "--patch", "x", "--post"], "--post only works with --pr"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


def test_unknown_ref_exits_2(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "review", "--repo", str(repo.path), "--base", "no-such-branch")
    assert code == 2 and "rev-parse" in err and len(err.strip().splitlines()) == 1


def test_console_script_runs_as_a_process(repo: GitRepo) -> None:
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    repo.commit()
    result = subprocess.run(
        [sys.executable, "-m", "reviewbot", "review", "--repo", str(repo.path), "--base", "main"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "conversation-send-missing-run" in result.stdout


def test_pr_source_reads_and_never_posts(
    fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_github.add_token("t0ken", "octocat")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    base, head = "a" * 40, "b" * 40
    fake_github.add_commit("o/r", base, {"src/chat.ts": "export const x = 1;\n"})
    fake_github.add_commit("o/r", head, {"src/chat.ts": SEND_WITHOUT_RUN})
    fake_github.add_pull(
        "o/r",
        FakePull(
            number=5,
            head_sha=head,
            base_sha=base,
            files=[FakeFile.added("src/chat.ts", SEND_WITHOUT_RUN)],
        ),
    )
    code, out, _ = run(
        capsys, "review", "--pr", "https://github.com/o/r/pull/5", "--format", "json"
    )
    data = json.loads(out)
    assert code == 1 and data["head"] == head
    assert [f["rule"] for f in data["findings"]] == ["conversation-send-missing-run"]
    assert all(r.method in ("GET",) or r.route == "graphql" for r in fake_github.requests)


def test_pr_source_post_posts_one_review(
    fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_github.add_token("t0ken", "github-actions[bot]")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    base, head = "a" * 40, "b" * 40
    fake_github.add_commit("o/r", base, {})
    fake_github.add_commit("o/r", head, {"src/chat.ts": SEND_WITHOUT_RUN})
    fake_github.add_pull(
        "o/r",
        FakePull(
            number=6,
            head_sha=head,
            base_sha=base,
            files=[FakeFile.added("src/chat.ts", SEND_WITHOUT_RUN)],
        ),
    )
    code, _, _ = run(capsys, "review", "--pr", "o/r#6", "--post")
    assert code == 1
    [review] = fake_github.repo("o/r").pulls[6].reviews
    assert review["commit_id"] == head and review["state"] == "COMMENTED"
    assert f"<!-- reviewbot:review head={head} -->" in review["body"]


def test_an_unexpected_crash_exits_2_in_one_line_not_1(
    repo: GitRepo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("reviewbot.render.render_review", broken)
    repo.write("src/chat.ts", SEND_WITHOUT_RUN)
    repo.commit()
    code, out, err = run(capsys, "review", "--repo", str(repo.path), "--base", "main")
    assert code == 2 and out == ""
    assert err.strip() == "reviewbot: error: unexpected RuntimeError: boom"


def test_empty_settings_in_the_environment_mean_unset(
    repo: GitRepo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEWBOT_APP_ID", "")
    monkeypatch.setenv("REVIEWBOT_NOW", "")
    code, _, err = run(capsys, "review", "--repo", str(repo.path), "--base", "main")
    assert code == 0, err
