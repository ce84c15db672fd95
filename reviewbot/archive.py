"""Unpack untrusted zip archives (CI artifacts) into a folder, within bounds, or refuse them.

An artifact is made by whatever a pull request's workflow ran, so everything about it is
hostile until checked: its size, how many entries it lists, how much it inflates to, and
above all its entry names, which must not lead outside the extraction folder (``../x``,
``/etc/x``, ``C:\\x``) or create symlinks through which a later write or read escapes. Every
name is checked before the first byte is written, so a refused archive leaves nothing
behind but an ``ArchiveError`` that says why.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MB = 1024 * 1024
DEFAULT_MAX_ARCHIVE_BYTES = 200 * MB
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_UNPACKED_BYTES = 1024 * MB
# Central directory bytes allowed per permitted file. A record is 46 bytes plus its name and
# extra fields, so 512 is generous for real archives while bounding how many entries (and so
# how much memory) zipfile's index of a crafted 200 MB archive of empty entries can take.
_DIRECTORY_BYTES_PER_FILE = 512
# zipfile reads up to 64 KiB (the longest archive comment) to find the end record.
_END_RECORD_SEARCH = 65_536 + 22
_CHUNK = MB
_DRIVE = re.compile(r"^[A-Za-z]:")
_NAME_SHOWN = 120


class ArchiveError(Exception):
    """The archive is refused or broken; the message is one sentence fit for a PR comment."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES

    def __post_init__(self) -> None:
        for name in ("max_archive_bytes", "max_files", "max_unpacked_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    @property
    def max_directory_bytes(self) -> int:
        return self.max_files * _DIRECTORY_BYTES_PER_FILE + _END_RECORD_SEARCH


@dataclass(frozen=True)
class Extracted:
    """What was written: regular files and their total size in bytes."""

    files: int
    bytes: int


def shown(name: str) -> str:
    """An entry name quoted for a message, bounded (names can be 64 KiB long)."""
    text = name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "…"
    return repr(text)


def member_path(name: str) -> PurePosixPath | None:
    """The relative path an entry name stands for; None for the root; ArchiveError if hostile.

    Backslashes count as separators: archives made on Windows use them, and an extractor on
    Windows would follow them out of the folder even where Linux would not.
    """
    if "\x00" in name:
        raise ArchiveError(f"entry {shown(name)} has a NUL byte in its name")
    text = name.replace("\\", "/")
    if text.startswith("/"):
        raise ArchiveError(f"entry {shown(name)} has an absolute path")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if parts and _DRIVE.match(parts[0]):
        raise ArchiveError(f"entry {shown(name)} starts with a drive letter")
    if ".." in parts:
        raise ArchiveError(f"entry {shown(name)} leads outside the extraction folder")
    return PurePosixPath(*parts) if parts else None


def _kind(info: zipfile.ZipInfo) -> str:
    """ "file", "dir", or why the entry cannot be unpacked as either."""
    if info.flag_bits & 0x1:
        return "encrypted"
    # Unix archivers keep st_mode in the high 16 bits; other systems leave them 0.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "a symlink"
    if info.is_dir() or file_type == stat.S_IFDIR or info.filename.replace("\\", "/")[-1:] == "/":
        return "dir"
    if file_type not in (0, stat.S_IFREG):
        return "a special file"
    return "file"


class _BoundedIndex(io.BytesIO):
    """Bytes whose reads are bounded while zipfile builds its index of the archive.

    zipfile reads the whole central directory at once and makes one object per entry, so the
    read itself is where a crafted archive's millions of entries must be stopped.
    """

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.size = len(data)
        self.limit: int | None = limit

    def read(self, size: int | None = -1, /) -> bytes:
        if self.limit is not None:
            left = self.size - self.tell()
            wanted = left if size is None or size < 0 else min(size, left)
            if wanted > self.limit:
                raise ArchiveError(
                    f"the archive's index is over {self.limit:,} bytes: it lists far more "
                    "entries than the file limit allows"
                )
        return super().read(size)


def _plan(
    archive: zipfile.ZipFile, limits: ArchiveLimits
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every file entry with its checked path; refuses the archive on the first bad entry."""
    entries = archive.infolist()
    # Directory entries are cheap but still entries: bound them too.
    if len(entries) > 2 * limits.max_files:
        raise ArchiveError(f"the archive has {len(entries):,} entries, over the limit")
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    declared = 0
    for info in entries:
        # orig_filename: zipfile cuts ``filename`` at a NUL byte, which hides the trick.
        name = info.orig_filename
        path = member_path(name)
        kind = _kind(info)
        if kind == "dir" or (path is None and kind == "file" and info.file_size == 0):
            continue  # folders are made as files need them
        if kind != "file":
            raise ArchiveError(f"entry {shown(name)} is {kind}; only files are unpacked")
        if path is None:
            raise ArchiveError(f"entry {shown(name)} has no file name")
        if path in seen:
            raise ArchiveError(f"entry {shown(name)} appears more than once")
        seen.add(path)
        files.append((info, path))
        if len(files) > limits.max_files:
            raise ArchiveError(f"the archive has more than {limits.max_files:,} files")
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise ArchiveError(
                f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes"
            )
    return files


def extract_zip(data: bytes, dest: Path, limits: ArchiveLimits | None = None) -> Extracted:
    """Unpack the zip ``data`` into the existing folder ``dest``; ArchiveError if refused.

    Only regular files are written (mode 0644, never over an existing path); folder entries
    are skipped and folders are made as needed. Bytes are counted as they are inflated, so a
    lying size field cannot get past ``max_unpacked_bytes`` either.
    """
    limits = limits or ArchiveLimits()
    if len(data) > limits.max_archive_bytes:
        raise ArchiveError(
            f"the archive is {len(data):,} bytes, over the limit of {limits.max_archive_bytes:,}"
        )
    root = dest.resolve(strict=True)
    source = _BoundedIndex(data, limits.max_directory_bytes)
    try:
        with zipfile.ZipFile(source) as archive:
            source.limit = None
            plan = _plan(archive, limits)
            written = 0
            for info, path in plan:
                written = _write_member(archive, info, root, path, written, limits)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})") from exc
    except NotImplementedError as exc:  # compression methods zipfile lacks (e.g. deflate64)
        raise ArchiveError(f"unsupported zip feature ({exc})") from exc
    except UnicodeDecodeError as exc:  # an entry flagged UTF-8 whose name is not
        raise ArchiveError("an entry name is not valid UTF-8") from exc
    except (zlib.error, lzma.LZMAError, EOFError) as exc:
        raise ArchiveError(f"corrupt compressed data ({exc})") from exc
    return Extracted(files=len(plan), bytes=written)


def _write_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    root: Path,
    path: PurePosixPath,
    written: int,
    limits: ArchiveLimits,
) -> int:
    target = root.joinpath(*path.parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Belt and braces: we never create links, but the folder must still be ours.
        if not target.parent.resolve(strict=True).is_relative_to(root):
            raise ArchiveError(f"entry {shown(info.filename)} leads outside the extraction folder")
        # O_EXCL + O_NOFOLLOW: never write through a link or over a file another entry made.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with archive.open(info) as src, os.fdopen(os.open(target, flags, 0o644), "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limits.max_unpacked_bytes:
                    raise ArchiveError(
                        f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes"
                    )
                out.write(chunk)
    except OSError as exc:
        # A file and a folder of the same name, a name too long for the file system, a full
        # disk: the entry's own name, never our absolute path, goes into the message.
        reason = exc.strerror or type(exc).__name__
        raise ArchiveError(f"entry {shown(info.filename)} cannot be unpacked: {reason}") from exc
    return written


__all__ = [
    "ArchiveError",
    "ArchiveLimits",
    "Extracted",
    "extract_zip",
    "member_path",
]
