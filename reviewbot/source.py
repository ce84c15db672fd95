"""The seam between the pipeline and wherever a change set comes from.

Three implementations: a local git repository (``gitlocal``), a patch file (``patchfile``)
and a GitHub pull request (``github``). The pipeline only speaks this protocol, so the same
review is produced whichever way the change arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from reviewbot.models import ChangeSet, Side

# Guideline files and file contents are untrusted and may be huge: cap what we read.
# Lockfiles run to megabytes; code files are bounded again by the checks (MAX_PARSE_BYTES).
MAX_FILE_BYTES = 20_000_000
MAX_GUIDELINE_FILES = 100


class SourceError(Exception):
    """The change set cannot be read at all (bad ref, unreadable patch, 404 PR)."""


class ChangeSource(Protocol):
    async def changeset(self) -> ChangeSet:
        """The diff between base and head: files with added/removed/visible lines."""
        ...

    async def read_files(
        self, wanted: Iterable[tuple[str, Side]]
    ) -> Mapping[tuple[str, Side], str]:
        """Whole texts of (path, side) pairs, in as few round trips as the source allows.

        Files that are missing, binary or larger than MAX_FILE_BYTES are left out.
        """
        ...

    async def guideline_files(self, side: Side) -> Mapping[str, str]:
        """Every guideline file (see ``guidelines.is_guideline_path``) at one side."""
        ...
