"""Build ChangedFiles the way the pipeline does: a unified diff parsed by reviewbot.diff."""

from __future__ import annotations

import difflib
import subprocess
import tempfile
import textwrap
from pathlib import Path

from reviewbot.checks.deps import introduced
from reviewbot.checks.deps.base import Dep
from reviewbot.diff import parse_diff
from reviewbot.models import ChangedFile, FileStatus, PinMapping


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _git_diff(base: str, head: str, path: str) -> str:
    """``git diff --no-index`` of two texts, with the headers naming ``path``."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "a").write_text(base)
        (Path(folder) / "b").write_text(head)
        result = subprocess.run(
            ["git", "diff", "--no-index", "--no-color", "-U3", "a", "b"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode in (0, 1), result.stderr
    body = result.stdout.split("\n@@", 1)
    return f"--- a/{path}\n+++ b/{path}\n@@{body[1]}" if len(body) == 2 else ""


def changed_file(path: str, base: str | None, head: str, *, whole: bool = True) -> ChangedFile:
    """The diff of base → head (base None: a new file); ``whole`` also sets the texts."""
    before = (base or "").splitlines(keepends=True)
    after = head.splitlines(keepends=True)
    source = "/dev/null" if base is None else f"a/{path}"
    if base is not None and len(after) > 2000:
        diff = _git_diff(base, head, path)  # difflib is quadratic on big lockfiles
    else:
        diff = "".join(difflib.unified_diff(before, after, source, f"b/{path}", n=3))
    if not diff:
        changed = ChangedFile(path=path)
    else:
        (changed,) = parse_diff(f"diff --git a/{path} b/{path}\n" + diff)
    if base is None:
        changed.status = FileStatus.ADDED
    if whole:
        changed.head_text = head
        changed.base_text = base
    return changed


def found(
    path: str,
    base: str | None,
    head: str,
    *,
    whole: bool = True,
    pins: tuple[PinMapping, ...] = (),
) -> list[Dep]:
    return list(introduced(changed_file(path, base, head, whole=whole), pins).deps)


def keys(deps: list[Dep]) -> set[tuple[str, str, str]]:
    return {dep.key for dep in deps}


def on_added_lines(path: str, base: str | None, head: str, *, whole: bool = True) -> bool:
    """Every dependency found sits on a line the change adds."""
    changed = changed_file(path, base, head, whole=whole)
    return all(dep.line in changed.added for dep in introduced(changed).deps)
