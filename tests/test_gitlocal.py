"""The local git source against real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewbot.gitlocal import GitSource
from reviewbot.models import FileStatus
from reviewbot.source import SourceError
from tests.gitrepo import GitRepo


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.py", "print('v1')\n")
    repo.write(".agents/skills/review.md", "---\nname: r\ntriggers: [/codereview]\n---\nbody\n")
    repo.commit("base")
    return repo


async def test_three_dot_diff_ignores_commits_on_base_after_the_fork(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.write("app.py", "print('v2')\n")
    repo.commit("feature work")
    repo.checkout("main")
    repo.write("unrelated.py", "x = 1\n")  # lands on main after the fork
    repo.commit("main moves on")
    changeset = await GitSource(repo.path, "main", "feature").changeset()
    assert [f.path for f in changeset.files] == ["app.py"]
    assert changeset.files[0].added == {1: "print('v2')"}
    assert changeset.head == repo.git("rev-parse", "feature").strip()
    assert changeset.base == repo.git("merge-base", "main", "feature").strip()
    assert "unrelated.py" not in changeset.head_paths and "app.py" in changeset.head_paths


async def test_reads_files_at_both_sides_in_one_batch(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.write("app.py", "print('v2')\n")
    repo.write("bin.dat", b"\0\1\2")
    repo.commit()
    source = GitSource(repo.path, "main")
    await source.changeset()
    texts = await source.read_files(
        [("app.py", "head"), ("app.py", "base"), ("missing.py", "head"), ("bin.dat", "head")]
    )
    assert texts == {("app.py", "head"): "print('v2')\n", ("app.py", "base"): "print('v1')\n"}


async def test_guideline_files_per_side(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.write(".agents/skills/extra/SKILL.md", "---\nname: extra\n---\n")
    repo.write(".agents/skills/notes/readme.txt", "not a skill")
    repo.commit()
    source = GitSource(repo.path, "main")
    await source.changeset()
    head = await source.guideline_files("head")
    base = await source.guideline_files("base")
    assert set(head) == {".agents/skills/review.md", ".agents/skills/extra/SKILL.md"}
    assert set(base) == {".agents/skills/review.md"}


async def test_deleted_file_and_unicode_path(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.remove("app.py")
    repo.write("dокумент.py", "x = 1\n")
    repo.commit()
    files = {f.path: f for f in (await GitSource(repo.path, "main").changeset()).files}
    assert files["app.py"].status is FileStatus.DELETED
    assert files["dокумент.py"].added == {1: "x = 1"}


@pytest.mark.parametrize(
    ("base", "head", "message"),
    [("nope", "HEAD", "rev-parse"), ("main", "nope", "rev-parse")],
)
async def test_unknown_refs_are_a_source_error(
    repo: GitRepo, base: str, head: str, message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        await GitSource(repo.path, base, head).changeset()


async def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a git repository"):
        await GitSource(tmp_path, "main").changeset()
