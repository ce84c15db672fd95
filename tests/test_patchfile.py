"""The patch-file source: only the diff, never the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewbot.models import FileStatus
from reviewbot.patchfile import PatchSource
from reviewbot.source import SourceError
from tests.gitrepo import GitRepo


async def test_format_patch_gives_head_sha_and_added_files_whole(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.py", "x = 1\n")
    repo.commit()
    repo.write("a.py", "x = 2\n")
    repo.write("new/b.ts", "export const b = 1;\nexport const c = 2;\n")
    sha = repo.commit("edit")
    patch = tmp_path / "change.patch"
    patch.write_text(repo.git("format-patch", "-1", "--stdout", "HEAD"))
    source = PatchSource(patch)
    changeset = await source.changeset()
    assert changeset.head == sha and changeset.base == "patch"
    assert {f.path: f.status for f in changeset.files} == {
        "a.py": FileStatus.MODIFIED,
        "new/b.ts": FileStatus.ADDED,
    }
    texts = await source.read_files([("new/b.ts", "head"), ("a.py", "head"), ("a.py", "base")])
    # Only a file the patch adds is known whole; nothing is read from anywhere else.
    assert texts == {("new/b.ts", "head"): "export const b = 1;\nexport const c = 2;\n"}
    assert changeset.info and not changeset.notes


async def test_plain_diff_gets_a_content_hash_as_head(tmp_path: Path) -> None:
    patch = tmp_path / "x.diff"
    patch.write_text("--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-a\n+b\n")
    changeset = await PatchSource(patch).changeset()
    assert len(changeset.head) == 12 and changeset.files[0].added == {1: "b"}


async def test_guidelines_only_from_files_the_patch_adds(tmp_path: Path) -> None:
    patch = tmp_path / "x.diff"
    patch.write_text(
        "--- /dev/null\n+++ b/.agents/skills/guide.md\n@@ -0,0 +1,3 @@\n+---\n+name: g\n+---\n"
    )
    source = PatchSource(patch)
    await source.changeset()
    assert await source.guideline_files("head") == {
        ".agents/skills/guide.md": "---\nname: g\n---\n"
    }
    assert await source.guideline_files("base") == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not a diff at all\n", "no unified diff"),
        ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n+one\n", "not a readable unified diff"),
    ],
)
async def test_unreadable_patches_are_source_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    patch = tmp_path / "bad.diff"
    patch.write_text(content)
    with pytest.raises(SourceError, match=message):
        await PatchSource(patch).changeset()


async def test_missing_patch_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        await PatchSource(tmp_path / "nope.diff").changeset()
