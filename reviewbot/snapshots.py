"""Compare snapshot directories (baseline vs current) and model the snapshot test report.

Files are matched by relative path. PNGs are compared pixel by pixel: a pixel *differs* when
its colour distance exceeds ``threshold``, where the distance is the largest absolute
difference over the R, G, B and A channels, normalised to 0..1 (so the default 0.01 lets a
channel move by 2 of 255 levels, and a 3-level change counts). An image is *changed* when
more than ``max_diff_pixels`` pixels differ or its size changed. Any other file is compared
byte for byte. Everything here reads local files only; posting the report is someone else's.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, urlsplit

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from reviewbot.render import MAX_BODY_CHARS, render

DEFAULT_THRESHOLD = 0.01
DEFAULT_MAX_DIFF_PIXELS = 100
# 40 Mpx (e.g. 8000×5000) is far above any screenshot and below Pillow's own bomb limit
# (89 Mpx), so an oversized image is refused by us, with a reason, before Pillow decodes it.
MAX_PIXELS = 40_000_000
MAX_PNG_BYTES = 64 * 1024 * 1024
MAX_FILES = 50_000

MARKER = "<!-- snapshot-test-report -->"
ACK_LABEL = "update-snapshots"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20
# Snapshot folders whose first sub-folder is named after the test file (vitest browser mode,
# jest-style tools): ``__screenshots__/home.spec.ts/hero.png`` → group ``home.spec.ts``.
_SNAPSHOT_DIRS = frozenset({"__screenshots__", "__snapshots__", "__image_snapshots__"})
# Playwright keeps a test's snapshots in ``<test file>-snapshots/``.
_PLAYWRIGHT_SUFFIX = "-snapshots"


class SnapshotError(Exception):
    """A snapshot directory cannot be compared at all (missing, unreadable, too many files)."""


class ImageError(ValueError):
    """One image cannot be decoded; the reason ends up in the report, never as a crash."""


class SnapshotClass(StrEnum):
    CHANGED = "changed"
    NEW = "new"
    REMOVED = "removed"
    UNCHANGED = "unchanged"


class SnapshotStatus(StrEnum):
    MATCH = "match"
    CHANGED = "changed"
    ACKNOWLEDGED = "acknowledged"
    ALL_NEW = "all_new"


@dataclass(frozen=True)
class CompareOptions:
    """The two thresholds (CLI flags and guideline settings) plus the safety bounds."""

    threshold: float = DEFAULT_THRESHOLD
    max_diff_pixels: int = DEFAULT_MAX_DIFF_PIXELS
    max_pixels: int = MAX_PIXELS
    max_png_bytes: int = MAX_PNG_BYTES
    max_files: int = MAX_FILES

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise ValueError("threshold must be a number between 0 and 1")
        if not math.isfinite(self.threshold) or not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        for name in ("max_diff_pixels", "max_pixels", "max_png_bytes", "max_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")

    @property
    def channel_limit(self) -> int:
        """The largest 8-bit channel change that does not make a pixel differ.

        ``d / 255 > threshold`` for an integer ``d`` is ``d > floor(threshold * 255)``; the
        epsilon keeps e.g. 0.6 * 255 = 152.99999999999997 at 153.
        """
        return math.floor(self.threshold * 255 + 1e-9)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, object]) -> CompareOptions:
        """Options from guideline settings (``threshold``, ``max_diff_pixels``); ValueError."""
        threshold = settings.get("threshold", DEFAULT_THRESHOLD)
        max_diff = settings.get("max_diff_pixels", DEFAULT_MAX_DIFF_PIXELS)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"threshold must be a number, not {threshold!r}")
        if isinstance(max_diff, bool) or not isinstance(max_diff, int):
            raise ValueError(f"max_diff_pixels must be an integer, not {max_diff!r}")
        return cls(threshold=float(threshold), max_diff_pixels=max_diff)


@dataclass(frozen=True)
class SnapshotEntry:
    """One relative path and what happened to it."""

    path: str
    kind: SnapshotClass
    group: str
    # Why it changed, or why a file could not be read; None for a plain match.
    reason: str | None = None
    diff_pixels: int | None = None
    total_pixels: int | None = None
    baseline_size: tuple[int, int] | None = None  # (width, height)
    current_size: tuple[int, int] | None = None
    # The diff image, relative to the diff directory (POSIX separators).
    diff_image: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "class": self.kind.value,
            "group": self.group,
            "reason": self.reason,
            "diff_pixels": self.diff_pixels,
            "total_pixels": self.total_pixels,
            "baseline_size": list(self.baseline_size) if self.baseline_size else None,
            "current_size": list(self.current_size) if self.current_size else None,
            "diff_image": self.diff_image,
        }


@dataclass(frozen=True)
class SnapshotResult:
    """Every compared path, whether the changes are acknowledged, and what was skipped."""

    entries: tuple[SnapshotEntry, ...]
    options: CompareOptions = field(default_factory=CompareOptions)
    acknowledged: bool = False
    notes: tuple[str, ...] = ()

    def of(self, kind: SnapshotClass) -> tuple[SnapshotEntry, ...]:
        return tuple(entry for entry in self.entries if entry.kind is kind)

    @property
    def changed(self) -> tuple[SnapshotEntry, ...]:
        return self.of(SnapshotClass.CHANGED)

    @property
    def new(self) -> tuple[SnapshotEntry, ...]:
        return self.of(SnapshotClass.NEW)

    @property
    def removed(self) -> tuple[SnapshotEntry, ...]:
        return self.of(SnapshotClass.REMOVED)

    @property
    def unchanged(self) -> tuple[SnapshotEntry, ...]:
        return self.of(SnapshotClass.UNCHANGED)

    @property
    def status(self) -> SnapshotStatus:
        if self.changed or self.removed:
            return SnapshotStatus.ACKNOWLEDGED if self.acknowledged else SnapshotStatus.CHANGED
        # Every entry is new: the main branch has no baselines yet.
        if self.entries and len(self.new) == len(self.entries):
            return SnapshotStatus.ALL_NEW
        return SnapshotStatus.MATCH

    @property
    def failed(self) -> bool:
        """Unacknowledged changes or removals: the check (and the CLI) fails."""
        return self.status is SnapshotStatus.CHANGED

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "changed": [entry.path for entry in self.changed],
            "new": [entry.path for entry in self.new],
            "removed": [entry.path for entry in self.removed],
            "unchanged": len(self.unchanged),
            "total": len(self.entries),
            "acknowledged": self.acknowledged,
            "threshold": self.options.threshold,
            "max_diff_pixels": self.options.max_diff_pixels,
            "notes": list(self.notes),
            "details": [entry.to_json() for entry in self.entries],
        }


# ---- listing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotFile:
    """A listed file: its real path, or why it must not be read (``path`` is then None)."""

    path: Path | None
    problem: str | None = None


@dataclass(frozen=True)
class Scan:
    """Both directories listed and paired by relative path, before any file is read."""

    pairs: tuple[tuple[str, SnapshotFile | None, SnapshotFile | None], ...]
    notes: tuple[str, ...] = ()


def group_of(path: str) -> str:
    """The test file a snapshot belongs to, or the first folder below the root ("" if none)."""
    folders = PurePosixPath(path).parts[:-1]
    for folder in reversed(folders):
        if folder.endswith(_PLAYWRIGHT_SUFFIX) and len(folder) > len(_PLAYWRIGHT_SUFFIX):
            return folder[: -len(_PLAYWRIGHT_SUFFIX)]
    for index, folder in enumerate(folders[:-1]):
        if folder in _SNAPSHOT_DIRS:
            return folders[index + 1]
    return folders[0] if folders else ""


def list_files(
    root: Path, *, exclude: Path | None = None, max_files: int = MAX_FILES
) -> tuple[dict[str, SnapshotFile], list[str]]:
    """Every regular file below ``root`` by relative POSIX path, plus notes on what was skipped.

    Symlinks are followed only while they stay inside ``root``: a snapshot directory comes
    from the PR, and a link to ``/etc/passwd`` or the runner's secrets must not be read or
    have its pixels described in a public comment.
    """
    try:
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise SnapshotError(f"{root}: {_why(exc)}") from exc
    if not real_root.is_dir():
        raise SnapshotError(f"{root}: not a directory")
    found: dict[str, SnapshotFile] = {}
    notes: list[str] = []
    skipped = 0
    visited = {real_root}
    stack: list[tuple[Path, PurePosixPath]] = [(real_root, PurePosixPath())]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except OSError as exc:
            if directory == real_root:
                raise SnapshotError(f"{root}: {_why(exc)}") from exc
            notes.append(f"Could not list {prefix.as_posix()}: {_why(exc)}")
            continue
        for item in items:
            rel = (prefix / item.name).as_posix()
            path = directory / item.name
            if item.is_symlink():
                try:
                    path = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    found[rel] = SnapshotFile(None, "broken symlink")
                    continue
                if not path.is_relative_to(real_root):
                    found[rel] = SnapshotFile(
                        None, "symlink points outside the snapshot directory; not followed"
                    )
                    continue
                is_dir, is_file = path.is_dir(), path.is_file()
            else:
                is_dir = item.is_dir(follow_symlinks=False)
                is_file = item.is_file(follow_symlinks=False)
            if is_dir:
                # ``visited`` stops symlink loops; ``exclude`` keeps our own diff images out.
                if path not in visited and path != exclude:
                    visited.add(path)
                    stack.append((path, PurePosixPath(rel)))
            elif is_file:
                found[rel] = SnapshotFile(path)
            else:
                skipped += 1
            if len(found) > max_files:
                raise SnapshotError(f"{root}: more than {max_files:,} files")
    if skipped:
        notes.append(f"Skipped {skipped} special file(s) (sockets, pipes, devices).")
    return found, notes


def scan(
    baseline: Path, current: Path, *, options: CompareOptions, exclude: Path | None = None
) -> Scan:
    """List both sides and pair them; raises SnapshotError when a side cannot be listed."""
    real_exclude = exclude.resolve() if exclude is not None else None
    base_files, base_notes = list_files(baseline, exclude=real_exclude, max_files=options.max_files)
    current_files, current_notes = list_files(
        current, exclude=real_exclude, max_files=options.max_files
    )
    paths = sorted(base_files.keys() | current_files.keys())
    pairs = tuple((path, base_files.get(path), current_files.get(path)) for path in paths)
    notes = [f"Baseline: {note}" for note in base_notes]
    notes += [f"Current: {note}" for note in current_notes]
    return Scan(pairs, tuple(notes))


# ---- comparing -------------------------------------------------------------------------


def compare_dirs(
    baseline: Path,
    current: Path,
    *,
    options: CompareOptions | None = None,
    diff_dir: Path | None = None,
    acknowledged: bool = False,
    workers: int | None = None,
) -> SnapshotResult:
    """Compare two snapshot directories, writing diff images into ``diff_dir`` if given."""
    options = options or CompareOptions()
    listed = scan(baseline, current, options=options, exclude=diff_dir)
    entries = tuple(compare_scan(listed, options=options, diff_dir=diff_dir, workers=workers))
    return SnapshotResult(entries, options, acknowledged, listed.notes)


def compare_scan(
    listed: Scan,
    *,
    options: CompareOptions,
    diff_dir: Path | None = None,
    workers: int | None = None,
) -> Iterator[SnapshotEntry]:
    """Entries in path order, one pair in memory per worker (memory stays flat).

    Threads pay off because zlib inflate in Pillow and the numpy comparisons release the GIL.
    """
    real_diff_dir = diff_dir.resolve() if diff_dir is not None else None
    count = workers if workers is not None else min(4, os.cpu_count() or 1)
    if count <= 1:
        for path, base, current in listed.pairs:
            yield compare_pair(path, base, current, options=options, diff_dir=real_diff_dir)
        return
    with ThreadPoolExecutor(max_workers=count) as pool:
        pending: deque[Future[SnapshotEntry]] = deque()
        for path, base, current in listed.pairs:
            pending.append(
                pool.submit(
                    compare_pair, path, base, current, options=options, diff_dir=real_diff_dir
                )
            )
            # A short queue bounds how many decoded images exist at once.
            if len(pending) >= 2 * count:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def compare_pair(
    path: str,
    base: SnapshotFile | None,
    current: SnapshotFile | None,
    *,
    options: CompareOptions,
    diff_dir: Path | None = None,
) -> SnapshotEntry:
    """Classify one relative path. File problems become a reason on the entry."""
    group = group_of(path)
    if base is None or current is None:
        kind = SnapshotClass.NEW if base is None else SnapshotClass.REMOVED
        present = current if base is None else base
        return SnapshotEntry(path, kind, group, reason=present.problem if present else None)
    if base.path is None or current.path is None:
        side = "baseline" if base.path is None else "current"
        return SnapshotEntry(
            path, SnapshotClass.CHANGED, group, reason=f"{side}: {base.problem or current.problem}"
        )
    is_png = path.lower().endswith(".png")
    data: tuple[bytes, bytes] | None = None
    try:
        with _open_regular(base.path) as fb, _open_regular(current.path) as fc:
            size_b = os.fstat(fb.fileno()).st_size
            size_c = os.fstat(fc.fileno()).st_size
            if is_png and max(size_b, size_c) <= options.max_png_bytes:
                data = (fb.read(options.max_png_bytes + 1), fc.read(options.max_png_bytes + 1))
            elif size_b == size_c and _same_stream(fb, fc):
                return SnapshotEntry(path, SnapshotClass.UNCHANGED, group)
    except OSError as exc:
        return SnapshotEntry(path, SnapshotClass.CHANGED, group, reason=f"unreadable: {_why(exc)}")
    if data is not None:
        if data[0] == data[1]:
            # Identical bytes (the common case): no decoding at all.
            return _identical_png(path, group, data[0])
        return _compare_png(path, group, data[0], data[1], options, diff_dir)
    if is_png:
        reason = (
            f"too large to compare pixel by pixel (over {options.max_png_bytes:,} bytes) "
            "and the bytes differ"
        )
    else:
        reason = f"content differs ({size_b:,} → {size_c:,} bytes)"
    return SnapshotEntry(path, SnapshotClass.CHANGED, group, reason=reason)


def _identical_png(path: str, group: str, data: bytes) -> SnapshotEntry:
    try:
        size: tuple[int, int] | None = png_size(data)
    except ImageError:
        size = None  # not a PNG inside, but the same bytes on both sides
    return SnapshotEntry(
        path,
        SnapshotClass.UNCHANGED,
        group,
        diff_pixels=0 if size else None,
        total_pixels=size[0] * size[1] if size else None,
        baseline_size=size,
        current_size=size,
    )


def _compare_png(
    path: str,
    group: str,
    data_b: bytes,
    data_c: bytes,
    options: CompareOptions,
    diff_dir: Path | None,
) -> SnapshotEntry:
    try:
        base = decode_png(data_b, max_pixels=options.max_pixels)
    except ImageError as exc:
        return SnapshotEntry(path, SnapshotClass.CHANGED, group, reason=f"baseline: {exc}")
    try:
        current = decode_png(data_c, max_pixels=options.max_pixels)
    except ImageError as exc:
        return SnapshotEntry(path, SnapshotClass.CHANGED, group, reason=f"current: {exc}")
    size_b = (base.shape[1], base.shape[0])
    size_c = (current.shape[1], current.shape[0])
    differing = differing_pixels(base, current, options.channel_limit)
    height, width = canvas_shape(base, current)
    total = height * width
    if size_b == size_c and differing.size <= options.max_diff_pixels:
        return SnapshotEntry(
            path,
            SnapshotClass.UNCHANGED,
            group,
            diff_pixels=int(differing.size),
            total_pixels=total,
            baseline_size=size_b,
            current_size=size_c,
        )
    share = differing.size / total if total else 1.0
    reason = f"{differing.size:,} pixels differ ({share:.2%})"
    if size_b != size_c:
        reason = f"size changed {size_b[0]}×{size_b[1]} → {size_c[0]}×{size_c[1]}; " + reason
    diff_file = None
    if diff_dir is not None:
        diff_file = diff_path(path)
        try:
            write_diff_image(diff_dir, diff_file, diff_image(base, current, differing))
        except OSError as exc:
            reason += f"; diff image not written: {_why(exc)}"
            diff_file = None
    return SnapshotEntry(
        path,
        SnapshotClass.CHANGED,
        group,
        reason=reason,
        diff_pixels=int(differing.size),
        total_pixels=total,
        baseline_size=size_b,
        current_size=size_c,
        diff_image=diff_file,
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, read before any decoding happens."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ImageError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_png(data: bytes, *, max_pixels: int = MAX_PIXELS) -> NDArray[np.uint8]:
    """Decode PNG bytes to an (height, width, 3 or 4) array; ImageError on any failure.

    RGB stays RGB (its alpha is 255 everywhere, so the distance is the same) because the
    RGBA conversion would cost as much as a fifth of the decode; every other mode is RGBA.
    """
    width, height = png_size(data)
    if width * height > max_pixels:
        raise ImageError(
            f"image too large to compare ({width}×{height} pixels, limit {max_pixels:,})"
        )
    try:
        # formats=["PNG"]: a .png that is really a GIF or TIFF is not handed to other decoders.
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            kept = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
            array = np.asarray(kept, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb ({exc})") from exc
    # Pillow reports broken files as OSError (truncated, bad zlib), SyntaxError (bad chunks),
    # ValueError (oversized text chunks) or EOFError.
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"not a readable PNG ({exc})") from exc
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"unexpected pixel layout {array.shape}")
    return array


def canvas_shape(base: NDArray[np.uint8], current: NDArray[np.uint8]) -> tuple[int, int]:
    """(height, width) of the smallest canvas holding both images at the top-left corner."""
    return max(base.shape[0], current.shape[0]), max(base.shape[1], current.shape[1])


def differing_pixels(
    base: NDArray[np.uint8], current: NDArray[np.uint8], channel_limit: int
) -> NDArray[np.intp]:
    """Flat indices (on the common canvas) of pixels whose distance exceeds the limit.

    Arrays are (height, width, 3 or 4) uint8; RGB counts as opaque RGBA. Where the sizes
    differ, a pixel covered by only one of the two images differs too.
    """
    if base.shape == current.shape:
        if np.array_equal(base, current):
            # Same pixels in other bytes (re-encoded): the common unchanged case, one memcmp.
            return np.empty(0, dtype=np.intp)
        return _same_shape_diff(base, current, channel_limit)
    if base.shape[:2] == current.shape[:2]:  # RGB against RGBA
        return _same_shape_diff(_rgba(base), _rgba(current), channel_limit)
    base, current = _rgba(base), _rgba(current)
    height, width = canvas_shape(base, current)
    over_h = min(base.shape[0], current.shape[0])
    over_w = min(base.shape[1], current.shape[1])
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    in_base = (rows < base.shape[0]) & (cols < base.shape[1])
    in_current = (rows < current.shape[0]) & (cols < current.shape[1])
    mask = in_base ^ in_current
    overlap = _same_shape_diff(
        np.ascontiguousarray(base[:over_h, :over_w]),
        np.ascontiguousarray(current[:over_h, :over_w]),
        channel_limit,
    )
    inside = np.zeros(over_h * over_w, dtype=bool)
    inside[overlap] = True
    mask[:over_h, :over_w] |= inside.reshape(over_h, over_w)
    return np.flatnonzero(mask)


def _rgba(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if pixels.shape[2] == 4:
        return pixels
    opaque = np.full((*pixels.shape[:2], 4), 255, dtype=np.uint8)
    opaque[:, :, :3] = pixels
    return opaque


def _same_shape_diff(
    base: NDArray[np.uint8], current: NDArray[np.uint8], channel_limit: int
) -> NDArray[np.intp]:
    """Same-shape contiguous arrays → flat pixel indices whose max channel change > limit."""
    channels = base.shape[2]
    flat_b = base.reshape(-1)
    flat_c = current.reshape(-1)
    # A byte compare finds the candidates and the distance is computed for those only: a
    # small change (the usual case) costs little more than one pass over the bytes.
    changed_bytes = np.flatnonzero(flat_b != flat_c)
    if changed_bytes.size > flat_b.size // 8:
        # Most of the image changed: whole-array arithmetic beats gathering.
        distance = (np.maximum(base, current) - np.minimum(base, current)).max(axis=2)
        return np.flatnonzero(distance > channel_limit)
    pixels = changed_bytes // channels  # sorted, with repeats for several channels
    first = np.ones(pixels.size, dtype=bool)
    np.not_equal(pixels[1:], pixels[:-1], out=first[1:])
    candidates = pixels[first]
    pixels_b = base.reshape(-1, channels)[candidates]
    pixels_c = current.reshape(-1, channels)[candidates]
    # max - min instead of abs(a - b): no uint8 wrap-around and no widening copy.
    distance = (np.maximum(pixels_b, pixels_c) - np.minimum(pixels_b, pixels_c)).max(axis=1)
    result: NDArray[np.intp] = candidates[distance > channel_limit]
    return result


# The diff image is a palette image: 64 light greys (191..254, the faded original) and red.
# One byte per pixel encodes about four times faster than RGB.
_GREYS = 64
DIFF_RED = (255, 0, 0)
_DIFF_PALETTE = [level for grey in range(_GREYS) for level in (191 + grey,) * 3] + list(DIFF_RED)


def diff_image(
    base: NDArray[np.uint8], current: NDArray[np.uint8], differing: NDArray[np.intp]
) -> Image.Image:
    """Differing pixels in red over a faded grey copy of the current image (mode "P")."""
    if base.shape == current.shape:
        source = current
    else:
        # The current image where it exists, the baseline where only it reaches, else white.
        base, current = _rgba(base), _rgba(current)
        source = np.full((*canvas_shape(base, current), 4), 255, dtype=np.uint8)
        source[: base.shape[0], : base.shape[1]] = base
        source[: current.shape[0], : current.shape[1]] = current
    grey = np.asarray(Image.fromarray(source).convert("L"), dtype=np.uint8)
    indices = grey >> 2  # 0..63
    indices.reshape(-1)[differing] = _GREYS  # the palette's red
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    image.putpalette(_DIFF_PALETTE)
    return image


def diff_path(path: str) -> str:
    """``a/b/hero.png`` → ``a/b/hero-diff.png``."""
    posix = PurePosixPath(path)
    return posix.with_name(f"{posix.stem}-diff.png").as_posix()


def write_diff_image(diff_dir: Path, relative: str, image: Image.Image) -> None:
    """Write below ``diff_dir`` only; OSError if a symlink would lead the write elsewhere."""
    target = diff_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(diff_dir.resolve()):
        raise OSError(f"{relative}: folder leads outside the diff directory")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(target, flags, 0o644), "wb") as handle:
        # compress_level 1: a diff image is a throwaway artefact; speed matters more.
        image.save(handle, format="PNG", compress_level=1)


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading without following a final symlink or blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")


def _same_stream(first: BinaryIO, second: BinaryIO) -> bool:
    while True:
        chunk = first.read(_CHUNK)
        if chunk != second.read(_CHUNK):
            return False
        if not chunk:
            return True


def _why(exc: BaseException) -> str:
    """An OSError's reason without the absolute path (that would leak runner layout)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# ---- the report ------------------------------------------------------------------------

_SECTIONS = (
    (SnapshotClass.CHANGED, "🔴 Changed snapshots"),
    (SnapshotClass.NEW, "🆕 New snapshots"),
    (SnapshotClass.REMOVED, "🗑️ Removed snapshots"),
    (SnapshotClass.UNCHANGED, "✅ Unchanged snapshots"),
)
# Entries listed per section before "…and N more"; smaller caps are tried in turn until the
# body fits GitHub's limit.
_LIST_CAPS = (500, 100, 20, 0)
_MD_PUNCTUATION = "\\`*_[]~"
DEFAULT_ACK_HINT = f"add the `{ACK_LABEL}` label to the pull request"


def render_report(
    result: SnapshotResult,
    *,
    head_sha: str | None,
    diff_base_url: str | None,
    ack_hint: str = DEFAULT_ACK_HINT,
) -> str:
    """The PR comment for a comparison. ValueError if ``diff_base_url`` is not http(s)."""
    base_url = safe_base_url(diff_base_url)
    text = ""
    for cap in _LIST_CAPS:
        text = render(
            "snapshot_report.md.j2", **_report_context(result, head_sha, base_url, cap, ack_hint)
        )
        if len(text) <= MAX_BODY_CHARS:
            break
    return text


def _report_context(
    result: SnapshotResult, head_sha: str | None, base_url: str | None, cap: int, ack_hint: str
) -> dict[str, object]:
    sections = []
    for kind, title in _SECTIONS:
        entries = sorted(result.of(kind), key=lambda entry: (entry.group, entry.path))
        if not entries:
            continue  # empty sections are left out
        groups: list[dict[str, object]] = []
        items: list[dict[str, str]] = []
        for entry in entries[:cap]:
            if not groups or groups[-1]["key"] != entry.group:
                items = []
                name = entry.group or "(top level)"
                groups.append({"key": entry.group, "name": _inline(name), "items": items})
            url = ""
            if base_url and entry.diff_image:
                url = f"{base_url}/{quote(entry.diff_image, safe='/')}"
            detail = entry.reason if kind is not SnapshotClass.UNCHANGED else None
            items.append(
                {"label": _inline(entry.path), "detail": _inline(detail or ""), "url": url}
            )
        sections.append(
            {
                "title": title,
                "count": len(entries),
                "open": kind is SnapshotClass.CHANGED and result.failed,
                "groups": groups,
                "hidden": max(0, len(entries) - cap),
            }
        )
    head_is_hex = head_sha is not None and _is_hex_sha(head_sha)
    return {
        "marker": MARKER,
        "status": result.status.value,
        "counts": {
            "changed": len(result.changed),
            "new": len(result.new),
            "removed": len(result.removed),
            "unchanged": len(result.unchanged),
            "total": len(result.entries),
        },
        "head_sha": head_sha,
        "head_is_hex": head_is_hex,
        "sections": sections,
        "notes": [_inline(note) for note in result.notes],
        "threshold": f"{result.options.threshold:g}",
        "max_diff_pixels": f"{result.options.max_diff_pixels:,}",
        "ack_hint": ack_hint,
    }


def _inline(text: str) -> str:
    """Backslash-escape markdown punctuation so a file name cannot form links or emphasis.

    The template still applies the ``md`` filter for HTML and @-mentions.
    """
    text = " ".join(text.split())
    return "".join(f"\\{char}" if char in _MD_PUNCTUATION else char for char in text)


def _is_hex_sha(value: str) -> bool:
    return 7 <= len(value) <= 64 and all(char in "0123456789abcdef" for char in value)


def safe_base_url(url: str | None) -> str | None:
    """The base URL ready to prefix diff links, or None; ValueError when it is not http(s)."""
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"diff base URL must be an http(s) URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ValueError("diff base URL must not have a query or fragment")
    # Percent-encode anything that could end the markdown link target early.
    return quote(url.rstrip("/"), safe=":/@!$&'*+,;=%-._~")
