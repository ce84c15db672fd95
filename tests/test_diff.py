"""Diff parsing on the shapes real diffs come in."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewbot.diff import DiffError, parse_diff, parse_file_patch, partial_text
from reviewbot.models import FileStatus
from tests.gitrepo import GitRepo


def diff_of(repo: GitRepo) -> str:
    return repo.git("diff", "-M", "main", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("keep.txt", "one\ntwo\nthree\n")
    repo.write("old_name.py", "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n")
    repo.write("gone.txt", "bye\n")
    repo.write("crlf.txt", "x\r\ny\r\n")
    repo.write("image.png", b"\x89PNG\r\n\x1a\n\0\0\0binary")
    repo.commit("base")
    repo.branch("feature")
    return repo


def test_modified_file_records_added_removed_and_visible_lines(repo: GitRepo) -> None:
    repo.write("keep.txt", "one\nTWO\nthree\nfour\n")
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.path == "keep.txt"
    assert changed.status is FileStatus.MODIFIED
    assert changed.added == {2: "TWO", 4: "four"}
    assert changed.removed == {2: "two"}
    assert changed.diff_lines == {1, 2, 3, 4}


def test_rename_with_edit_keeps_old_path(repo: GitRepo) -> None:
    repo.git("mv", "old_name.py", "new_name.py")
    repo.write("new_name.py", "a = 1\nb = 2\nc = 3\nd = 4\ne = 50\n")
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.status is FileStatus.RENAMED
    assert (changed.old_path, changed.path) == ("old_name.py", "new_name.py")
    assert changed.added == {5: "e = 50"}


def test_pure_rename_has_no_hunks(repo: GitRepo) -> None:
    repo.git("mv", "keep.txt", "moved.txt")
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.status is FileStatus.RENAMED
    assert changed.base_path == "keep.txt"
    assert changed.added == {} and changed.diff_lines == frozenset()


def test_deleted_and_added_files(repo: GitRepo) -> None:
    repo.remove("gone.txt")
    repo.write("new.txt", "hello\nworld")  # no newline at end of file
    repo.commit()
    files = {f.path: f for f in parse_diff(diff_of(repo))}
    assert files["gone.txt"].status is FileStatus.DELETED
    assert files["gone.txt"].removed == {1: "bye"}
    assert files["new.txt"].status is FileStatus.ADDED
    assert files["new.txt"].added == {1: "hello", 2: "world"}


def test_binary_file_is_marked_binary(repo: GitRepo) -> None:
    repo.write("image.png", b"\x89PNG\r\n\x1a\n\0\0\0other")
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.is_binary and changed.added == {}


def test_crlf_lines_lose_their_carriage_return(repo: GitRepo) -> None:
    repo.write("crlf.txt", "x\r\ny\r\nz\r\n")
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.added == {3: "z"}


def test_mode_change_only_diff_has_no_hunks(repo: GitRepo) -> None:
    (repo.path / "keep.txt").chmod(0o755)
    repo.commit()
    [changed] = parse_diff(diff_of(repo))
    assert changed.path == "keep.txt" and changed.added == {}


def test_empty_diff_is_empty() -> None:
    assert parse_diff("") == []


def test_garbage_hunk_is_an_error() -> None:
    with pytest.raises(DiffError):
        parse_diff("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n+only one line\n")


def test_github_file_patch_and_partial_text() -> None:
    patch = "@@ -10,3 +10,4 @@ def f():\n     a = 1\n-    b = 2\n+    b = 3\n+    c = 4\n     d = 5"
    changed = parse_file_patch("src/x.py", patch, FileStatus.MODIFIED)
    assert changed.added == {11: "    b = 3", 12: "    c = 4"}
    assert changed.removed == {11: "    b = 2"}
    assert changed.diff_lines == {10, 11, 12, 13}
    lines = partial_text(changed).splitlines()
    assert len(lines) == 13 and lines[10] == "    b = 3" and lines[0] == ""


def test_github_patch_that_is_unreadable_becomes_a_note() -> None:
    changed = parse_file_patch("x", "@@ -1,5 +1,5 @@\n+a\n", FileStatus.MODIFIED)
    assert changed.note and "unreadable" in changed.note
