"""Turn unified diffs into ChangedFiles, with unidiff doing the parsing.

Two shapes arrive here: a whole `git diff` (local repositories, patch files) and GitHub's
per-file ``patch`` field, which is hunks without file headers.
"""

from __future__ import annotations

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from reviewbot.models import ChangedFile, FileStatus


class DiffError(ValueError):
    """The text is not a unified diff we can read."""


def _strip_prefix(path: str | None) -> str | None:
    if path is None or path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        return path[2:]
    return path


def _line_text(value: str) -> str:
    return value.rstrip("\r\n")


def _changed_file(patched: PatchedFile) -> ChangedFile:
    source = _strip_prefix(patched.source_file)
    target = _strip_prefix(patched.target_file)
    if patched.is_removed_file:
        status = FileStatus.DELETED
    elif patched.is_added_file:
        status = FileStatus.ADDED
    elif patched.is_rename or (source and target and source != target):
        status = FileStatus.RENAMED
    else:
        status = FileStatus.MODIFIED
    path = target or source or patched.path
    changed = ChangedFile(
        path=path,
        status=status,
        old_path=source if status is FileStatus.RENAMED else None,
        is_binary=bool(patched.is_binary_file),
    )
    fill_lines(changed, patched)
    return changed


def fill_lines(changed: ChangedFile, patched: PatchedFile) -> None:
    """Record added, removed and visible head lines of ``patched`` on ``changed``."""
    for hunk in patched:
        for line in hunk:
            if line.is_added and line.target_line_no is not None:
                changed.added[line.target_line_no] = _line_text(line.value)
                changed.visible[line.target_line_no] = _line_text(line.value)
            elif line.is_removed and line.source_line_no is not None:
                changed.removed[line.source_line_no] = _line_text(line.value)
            elif line.is_context and line.target_line_no is not None:
                changed.visible[line.target_line_no] = _line_text(line.value)


def parse_diff(text: str) -> list[ChangedFile]:
    """Parse a whole unified diff (``git diff`` output or a ``.patch`` file)."""
    # CRLF files keep their "\r" inside line values; unidiff splits on "\n" only.
    try:
        patch = PatchSet(text.splitlines(keepends=True))
    except UnidiffParseError as error:
        raise DiffError(f"not a readable unified diff: {error}") from error
    return [_changed_file(patched) for patched in patch]


def parse_file_patch(path: str, patch: str, status: FileStatus) -> ChangedFile:
    """Parse GitHub's per-file ``patch`` (hunks only) for ``path``."""
    changed = ChangedFile(path=path, status=status)
    if not patch:
        return changed
    header = f"--- a/{path}\n+++ b/{path}\n"
    body = patch if patch.endswith("\n") else patch + "\n"
    try:
        parsed = PatchSet((header + body).splitlines(keepends=True))
    except UnidiffParseError as error:
        changed.note = f"unreadable patch: {error}"
        return changed
    for patched in parsed:
        fill_lines(changed, patched)
    return changed


def partial_text(changed: ChangedFile) -> str:
    """Rebuild the head file from the diff's visible lines, blank elsewhere.

    Used when the whole file cannot be read (patch input): parsers are error-tolerant and
    line numbers still match the diff, so findings land on the right lines.
    """
    if not changed.visible:
        return ""
    last = max(changed.visible)
    return "\n".join(changed.visible.get(number, "") for number in range(1, last + 1)) + "\n"
