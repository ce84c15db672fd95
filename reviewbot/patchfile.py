"""Change sets from a patch file: the diff and nothing else.

No repository is read. A file the patch adds is known whole (its added lines), so a
guideline or manifest that the patch creates is still seen; everything else is only what
the hunks show.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from reviewbot.diff import DiffError, parse_diff
from reviewbot.models import ChangedFile, ChangeSet, FileStatus, Side
from reviewbot.source import MAX_FILE_BYTES, MAX_GUIDELINE_FILES, SourceError

MAX_PATCH_BYTES = 100_000_000
# `git format-patch` output starts with "From <commit sha> Mon Sep 17 00:00:00 2001".
_FORMAT_PATCH_HEADER = re.compile(rb"^From ([0-9a-f]{40}) ", re.MULTILINE)


def _whole_text(changed: ChangedFile) -> str | None:
    if changed.status is not FileStatus.ADDED or changed.is_binary:
        return None
    return "".join(line + "\n" for _, line in sorted(changed.added.items()))


class PatchSource:
    """A ``ChangeSource`` over one unified diff on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: list[ChangedFile] | None = None

    def _load(self) -> ChangeSet:
        try:
            size = self.path.stat().st_size
            if size > MAX_PATCH_BYTES:
                raise SourceError(f"{self.path} is larger than {MAX_PATCH_BYTES} bytes")
            raw = self.path.read_bytes()
        except OSError as error:
            raise SourceError(f"cannot read {self.path}: {error.strerror}") from error
        try:
            files = parse_diff(raw.decode("utf-8", errors="replace"))
        except DiffError as error:
            raise SourceError(f"{self.path}: {error}") from error
        if not files and raw.strip():
            raise SourceError(f"{self.path} contains no unified diff")
        match = _FORMAT_PATCH_HEADER.search(raw)
        head = match.group(1).decode() if match else hashlib.sha256(raw).hexdigest()[:12]
        self._files = files
        return ChangeSet(
            base="patch",
            head=head,
            files=files,
            info=["Only the patch was read: code outside its hunks was not seen."],
        )

    async def changeset(self) -> ChangeSet:
        return self._load()

    async def read_files(
        self, wanted: Iterable[tuple[str, Side]]
    ) -> Mapping[tuple[str, Side], str]:
        files = {changed.path: changed for changed in self._files or []}
        texts: dict[tuple[str, Side], str] = {}
        for path, side in wanted:
            changed = files.get(path)
            text = _whole_text(changed) if changed and side == "head" else None
            if text is not None and len(text) <= MAX_FILE_BYTES:
                texts[(path, side)] = text
        return texts

    async def guideline_files(self, side: Side) -> Mapping[str, str]:
        from reviewbot.guidelines import is_guideline_path

        if side == "base":
            return {}
        paths = [c.path for c in self._files or [] if is_guideline_path(c.path)]
        texts = await self.read_files((path, "head") for path in paths[:MAX_GUIDELINE_FILES])
        return {path: text for (path, _), text in texts.items()}
