"""Change sets from a local git repository, read with the git command line.

The diff is GitHub's three-dot diff: from the merge base of base and head to head, so a
local dry run shows what the pull request would show.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from reviewbot.diff import DiffError, parse_diff
from reviewbot.models import ChangeSet, Side
from reviewbot.source import MAX_FILE_BYTES, MAX_GUIDELINE_FILES, SourceError

GIT_TIMEOUT_S = 60
# Fixed options so a user's git config (external diff tools, colour, quoted paths) cannot
# change what we parse.
_GIT = ("git", "-c", "core.quotepath=off", "-c", "diff.noprefix=false", "--no-pager")


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        completed = subprocess.run(
            [*_GIT, "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as error:
        raise SourceError("git is not installed") from error
    except subprocess.TimeoutExpired as error:
        raise SourceError(f"git {args[0]} timed out after {GIT_TIMEOUT_S} s") from error
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(f"git {args[0]} failed: {message[-1] if message else 'no output'}")
    return completed.stdout


class GitSource:
    """A ``ChangeSource`` over a local repository and two refs."""

    def __init__(self, repo: Path, base: str, head: str = "HEAD") -> None:
        self.repo = repo
        self.base_ref = base
        self.head_ref = head
        self._base_sha = ""
        self._head_sha = ""

    def _resolve(self) -> None:
        if not (self.repo / ".git").exists() and not (self.repo / "HEAD").exists():
            raise SourceError(f"{self.repo} is not a git repository")
        head = _git(self.repo, "rev-parse", "--verify", "--quiet", f"{self.head_ref}^{{commit}}")
        base = _git(self.repo, "rev-parse", "--verify", "--quiet", f"{self.base_ref}^{{commit}}")
        self._head_sha = head.decode().strip()
        merge_base = _git(self.repo, "merge-base", base.decode().strip(), self._head_sha)
        self._base_sha = merge_base.decode().strip()

    def _changeset(self) -> ChangeSet:
        self._resolve()
        raw = _git(
            self.repo,
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            self._base_sha,
            self._head_sha,
        )
        try:
            files = parse_diff(raw.decode("utf-8", errors="replace"))
        except DiffError as error:
            raise SourceError(str(error)) from error
        paths = _git(self.repo, "ls-tree", "-r", "--name-only", "-z", self._head_sha)
        head_paths = tuple(p for p in paths.decode(errors="replace").split("\0") if p)
        return ChangeSet(
            base=self._base_sha, head=self._head_sha, files=files, head_paths=head_paths
        )

    async def changeset(self) -> ChangeSet:
        return await asyncio.to_thread(self._changeset)

    def _sha(self, side: Side) -> str:
        if not self._head_sha:
            self._resolve()
        return self._base_sha if side == "base" else self._head_sha

    def _read_files(self, wanted: Iterable[tuple[str, Side]]) -> dict[tuple[str, Side], str]:
        keys = list(dict.fromkeys(wanted))
        if not keys:
            return {}
        # One `git cat-file --batch` for every file: a process per file would dominate a
        # large review.
        request = "".join(f"{self._sha(side)}:{path}\n" for path, side in keys).encode()
        output = _git(self.repo, "cat-file", "--batch", stdin=request)
        texts: dict[tuple[str, Side], str] = {}
        offset = 0
        for key in keys:
            end = output.index(b"\n", offset)
            header = output[offset:end].split()
            offset = end + 1
            if len(header) < 3 or header[-1] == b"missing":
                continue
            size = int(header[2])
            blob = output[offset : offset + size]
            offset += size + 1
            if header[1] != b"blob" or size > MAX_FILE_BYTES or b"\0" in blob[:8000]:
                continue
            texts[key] = blob.decode("utf-8", errors="replace")
        return texts

    async def read_files(
        self, wanted: Iterable[tuple[str, Side]]
    ) -> Mapping[tuple[str, Side], str]:
        return await asyncio.to_thread(self._read_files, list(wanted))

    def _guideline_files(self, side: Side) -> dict[str, str]:
        from reviewbot.guidelines import GUIDELINE_DIRS, is_guideline_path

        listing = _git(self.repo, "ls-tree", "-r", "--name-only", "-z", self._sha(side), "--")
        paths = [
            path
            for path in listing.decode(errors="replace").split("\0")
            if path.startswith(tuple(d + "/" for d in GUIDELINE_DIRS)) and is_guideline_path(path)
        ][:MAX_GUIDELINE_FILES]
        texts = self._read_files((path, side) for path in paths)
        return {path: text for (path, _), text in texts.items()}

    async def guideline_files(self, side: Side) -> Mapping[str, str]:
        return await asyncio.to_thread(self._guideline_files, side)
