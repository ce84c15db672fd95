"""dependency-too-fresh / dependency-unverifiable: the check from change set to findings."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reviewbot.checks.base import CheckContext
from reviewbot.checks.dependency_fresh import (
    CHECK,
    RULE,
    UNVERIFIABLE,
    humanize_age,
    packages_to_look_up,
    threshold_text,
    wants_contents,
)
from reviewbot.models import (
    ChangedFile,
    ChangeSet,
    FileStatus,
    Finding,
    Location,
    Package,
    PinMapping,
    PublishTime,
    ReviewConfig,
    Severity,
    Side,
)
from reviewbot.patchfile import PatchSource
from tests.checks.deps.helpers import changed_file

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


def manifest(dependencies: dict[str, str]) -> str:
    return json.dumps({"name": "app", "dependencies": dependencies}, indent=2) + "\n"


def changeset(*files: ChangedFile) -> ChangeSet:
    return ChangeSet(base="b" * 40, head="h" * 40, files=list(files))


def review(
    changes: ChangeSet,
    times: dict[Package, datetime | str],
    config: ReviewConfig | None = None,
) -> tuple[list[Package], list[Finding], tuple[str, ...]]:
    """What the pipeline does: list the packages, date them, run the check."""
    config = config or ReviewConfig()
    wanted = packages_to_look_up(changes, config)
    answers = {
        package: PublishTime(package, value, None)
        if isinstance(value, datetime)
        else PublishTime(package, None, value)
        for package, value in times.items()
        if package in wanted
    }
    result = CHECK.run(CheckContext(changes, config, NOW, answers))
    return wanted, list(result.findings), result.incomplete


BUMP = changeset(
    changed_file(
        "package.json",
        manifest({"left-pad": "1.3.0", "react": "^18.0.0"}),
        manifest({"left-pad": "1.3.1", "react": "^18.0.0"}),
    )
)
LEFT_PAD = Package("npm", "left-pad", "1.3.1")


def test_a_fresh_version_is_critical_and_says_when_it_becomes_eligible() -> None:
    wanted, findings, incomplete = review(BUMP, {LEFT_PAD: NOW - timedelta(hours=2)})
    assert wanted == [LEFT_PAD]
    (finding,) = findings
    assert finding.rule == RULE
    assert finding.severity is Severity.CRITICAL
    assert (finding.path, finding.line) == ("package.json", 4)
    assert finding.identity == "npm:left-pad@1.3.1"
    for part in (
        "`left-pad`",
        "`1.3.1`",
        "npm",
        "2024-06-10T10:00:00Z",
        "about 2 hours ago",
        "at least 7 days old",
        "eligible on 2024-06-17T10:00:00Z",
    ):
        assert part in finding.message
    assert incomplete == ()


@pytest.mark.parametrize(
    ("age", "min_age_days", "fresh"),
    [
        (timedelta(days=8), 7.0, False),
        (timedelta(days=7, seconds=1), 7.0, False),
        (timedelta(days=6, hours=23), 7.0, True),
        (timedelta(hours=20), 1.0, True),
        (timedelta(days=2), 1.0, False),
        (timedelta(minutes=-5), 7.0, True),  # registry clock ahead of ours
    ],
)
def test_threshold(age: timedelta, min_age_days: float, fresh: bool) -> None:
    config = ReviewConfig(min_age_days=min_age_days)
    _, findings, _ = review(BUMP, {LEFT_PAD: NOW - age}, config)
    assert [f.rule for f in findings] == ([RULE] if fresh else [])


def test_exempt_packages_are_not_looked_up_or_reported() -> None:
    for glob in ("left-*", "npm:left-pad", "NPM:LEFT-PAD"):
        config = ReviewConfig(exempt=(glob,))
        wanted, findings, _ = review(BUMP, {LEFT_PAD: NOW}, config)
        assert (wanted, findings) == ([], []), glob
    wanted, _, _ = review(BUMP, {LEFT_PAD: NOW}, ReviewConfig(exempt=("pypi:left-pad",)))
    assert wanted == [LEFT_PAD]


def test_registry_failure_is_unverifiable_with_the_reason() -> None:
    _, findings, _ = review(BUMP, {LEFT_PAD: "not found on npm (HTTP 404)"})
    (finding,) = findings
    assert (finding.rule, finding.severity) == (UNVERIFIABLE, Severity.SUGGESTION)
    assert "not found on npm (HTTP 404)" in finding.message
    assert "`left-pad` `1.3.1`" in finding.message


def test_git_dependency_is_unverifiable_without_a_lookup() -> None:
    changes = changeset(
        changed_file(
            "package.json",
            manifest({"react": "^18.0.0"}),
            manifest({"react": "^18.0.0", "mine": "github:me/mine#0123abc"}),
        )
    )
    wanted, findings, _ = review(changes, {})
    assert wanted == []
    (finding,) = findings
    assert finding.rule == UNVERIFIABLE
    assert "installed from a git repository" in finding.message
    assert "`github:me/mine#0123abc`" in finding.message


def test_a_version_not_looked_up_makes_the_review_incomplete() -> None:
    config = ReviewConfig()
    result = CHECK.run(CheckContext(BUMP, config, NOW, {}))
    assert result.findings == ()
    assert result.incomplete and "left-pad 1.3.1" in result.incomplete[0]


def test_one_finding_lists_every_place_a_version_is_introduced() -> None:
    base_lock = {"name": "app", "lockfileVersion": 3, "packages": {"": {}}}
    head_lock = {
        "name": "app",
        "lockfileVersion": 3,
        "packages": {
            "": {},
            "node_modules/left-pad": {"version": "1.3.1"},
            "node_modules/a/node_modules/left-pad": {"version": "1.3.1"},
        },
    }
    changes = changeset(
        changed_file("package.json", manifest({}), manifest({"left-pad": "1.3.1"})),
        changed_file(
            "package-lock.json",
            json.dumps(base_lock, indent=2) + "\n",
            json.dumps(head_lock, indent=2) + "\n",
        ),
    )
    _, findings, _ = review(changes, {LEFT_PAD: NOW - timedelta(days=3)})
    (finding,) = findings
    assert "about 3 days ago" in finding.message
    places = [Location(finding.path, finding.line), *finding.also_at]
    assert [p.path for p in places] == ["package.json", "package-lock.json", "package-lock.json"]
    for place in places:
        changed = changes.file(place.path)
        assert changed is not None and place.line in changed.added


def test_pypi_pins_across_files_share_one_finding() -> None:
    server = Package("pypi", "openhands-agent-server", "1.2.3")
    changes = changeset(
        changed_file(
            "Dockerfile",
            "FROM python:3.12\n",
            "FROM python:3.12\nRUN pip install openhands-agent-server==1.2.3\n",
        ),
        changed_file(
            "scripts/run.sh",
            "#!/bin/sh\n",
            "#!/bin/sh\nuvx --from OpenHands_Agent_Server==1.2.3 agent-server\n",
            whole=False,
        ),
    )
    wanted, findings, _ = review(changes, {server: NOW - timedelta(minutes=40)})
    assert wanted == [server]
    (finding,) = findings
    assert "about 40 minutes ago" in finding.message
    assert "PyPI" in finding.message
    assert {(finding.path, finding.line), *((a.path, a.line) for a in finding.also_at)} == {
        ("Dockerfile", 2),
        ("scripts/run.sh", 2),
    }


def test_guideline_pin_mapping() -> None:
    config = ReviewConfig(
        pins=(
            PinMapping(
                "frontend/versions.json", "versions.agentServer", "pypi:openhands-agent-server"
            ),
        )
    )
    base = json.dumps({"versions": {"agentServer": "1.2.2"}}, indent=2) + "\n"
    head = base.replace("1.2.2", "1.2.3")
    changes = changeset(changed_file("frontend/versions.json", base, head))
    assert wants_contents("frontend/versions.json", config)
    server = Package("pypi", "openhands-agent-server", "1.2.3")
    wanted, findings, _ = review(changes, {server: NOW - timedelta(days=1)}, config)
    assert wanted == [server]
    (finding,) = findings
    assert (finding.rule, finding.line) == (RULE, 3)


def test_removed_and_unchanged_dependencies_are_not_findings() -> None:
    changes = changeset(
        changed_file(
            "package.json",
            manifest({"left-pad": "1.3.0", "react": "18.2.0"}),
            manifest({"react": "18.2.0"}),
        ),
        ChangedFile(
            path="requirements.txt", status=FileStatus.DELETED, removed={1: "rich==13.7.1"}
        ),
    )
    assert review(changes, {}) == ([], [], ())


def test_disabled_rules_or_no_minimum_age_do_nothing() -> None:
    off = ReviewConfig(rule_severity={RULE: "off", UNVERIFIABLE: "off"})
    assert review(BUMP, {LEFT_PAD: NOW}, off)[:2] == ([], [])
    assert review(BUMP, {LEFT_PAD: NOW}, ReviewConfig(min_age_days=0))[:2] == ([], [])


def test_ignored_paths_are_skipped() -> None:
    assert review(BUMP, {LEFT_PAD: NOW}, ReviewConfig(ignore_paths=("package.json",)))[:2] == (
        [],
        [],
    )


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("package.json", True),
        ("web/package-lock.json", True),
        ("pnpm-lock.yaml", True),
        ("yarn.lock", True),
        ("requirements-dev.txt", True),
        ("pyproject.toml", True),
        ("uv.lock", True),
        ("poetry.lock", True),
        ("config/versions.json", True),
        ("Dockerfile", False),
        ("src/app.py", False),
    ],
)
def test_wants_contents(path: str, wanted: bool) -> None:
    config = ReviewConfig(pins=(PinMapping("config/*.json", "a.b", "pypi:x"),))
    assert wants_contents(path, config) is wanted


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (timedelta(seconds=20), "less than a minute"),
        (timedelta(minutes=1), "about 1 minute"),
        (timedelta(minutes=40), "about 40 minutes"),
        (timedelta(hours=2, minutes=10), "about 2 hours"),
        (timedelta(hours=23), "about 23 hours"),
        (timedelta(days=3, hours=5), "about 3 days"),
    ],
)
def test_age_wording(age: timedelta, text: str) -> None:
    assert humanize_age(age) == text


@pytest.mark.parametrize(
    ("days", "text"), [(7, "7 days"), (1, "1 day"), (0.5, "12 hours"), (1.3, "1.3 days")]
)
def test_threshold_wording(days: float, text: str) -> None:
    assert threshold_text(days) == text


async def test_patch_only_input(tmp_path: Path) -> None:
    """A real patch file, read by PatchSource: only the diff is known."""
    repo = tmp_path / "repo"
    repo.mkdir()
    lock = {
        "name": "app",
        "lockfileVersion": 3,
        "packages": {"": {}, "node_modules/ms": {"version": "2.1.2"}},
    }
    (repo / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")
    (repo / "requirements.txt").write_text("rich==13.7.1\nhttpx==0.27.0\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "base")
    lock["packages"]["node_modules/ms"] = {"version": "2.1.3"}  # type: ignore[index]
    (repo / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")
    (repo / "requirements.txt").write_text("rich==13.7.1\nhttpx==0.27.2\n")
    (repo / "Dockerfile").write_text("FROM python:3.12\nRUN pip install uv==0.2.5\n")
    git("add", ".")
    patch = tmp_path / "change.patch"
    patch.write_text(git("diff", "--cached"))

    source = PatchSource(patch)
    changes = await source.changeset()
    config = ReviewConfig()
    wanted_texts: list[tuple[str, Side]] = [
        (c.path, "head") for c in changes.files if wants_contents(c.path, config)
    ]
    texts = await source.read_files(wanted_texts)
    for changed in changes.files:
        changed.head_text = texts.get((changed.path, "head"))
    ms, httpx_, uv = (
        Package("npm", "ms", "2.1.3"),
        Package("pypi", "httpx", "0.27.2"),
        Package("pypi", "uv", "0.2.5"),
    )
    wanted, findings, incomplete = review(
        changes,
        {
            ms: NOW - timedelta(days=1),
            httpx_: NOW - timedelta(days=30),
            uv: NOW - timedelta(hours=1),
        },
    )
    assert wanted == [ms, httpx_, uv]
    assert sorted((f.path, f.line, f.identity) for f in findings) == [
        ("Dockerfile", 2, "pypi:uv@0.2.5"),
        ("package-lock.json", 7, "npm:ms@2.1.3"),
    ]
    assert incomplete == ()


def test_a_lockfile_whose_diff_github_left_out_is_reported_without_a_line() -> None:
    # GitHub sends no patch for very large diffs: the texts are known, no line is in the diff.
    base = json.dumps(
        {"lockfileVersion": 3, "packages": {"node_modules/left-pad": {"version": "1.3.0"}}}
    )
    head = base.replace("1.3.0", "1.3.1")
    lock = ChangedFile(path="package-lock.json", head_text=head, base_text=base, note="no patch")
    _, findings, _ = review(changeset(lock), {LEFT_PAD: NOW - timedelta(hours=1)})
    (finding,) = findings
    assert (finding.rule, finding.path, finding.line) == (RULE, "package-lock.json", None)


def test_packages_to_look_up_is_sorted_unique_and_pure() -> None:
    changes = changeset(
        changed_file("requirements.txt", "", "rich==13.7.1\nhttpx==0.27.2\n"),
        changed_file("Dockerfile", "", "RUN pip install httpx==0.27.2\n"),
        changed_file("package.json", manifest({}), manifest({"left-pad": "1.3.1"})),
    )
    first = packages_to_look_up(changes, ReviewConfig())
    assert first == [
        LEFT_PAD,
        Package("pypi", "httpx", "0.27.2"),
        Package("pypi", "rich", "13.7.1"),
    ]
    assert packages_to_look_up(changes, ReviewConfig()) == first
    assert [f.path for f in changes.files] == ["requirements.txt", "Dockerfile", "package.json"]
