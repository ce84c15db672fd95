"""Which dependency versions one changed file introduces, and on which added lines.

With both whole files (head and base) the format's structured parse decides what is new and
a line scan only finds where to show it. With the diff alone (patch input, unreadable file)
the scan of added lines against removed lines decides both, and says what it could not tie
to a package. Files that are no manifest are searched for inline ``name==1.2.3`` pins.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reviewbot.checks.deps.base import Dep, Format, Lines, ParseError, lines_of
from reviewbot.checks.deps.npm import PackageJson, PackageLock
from reviewbot.checks.deps.pins import inline_pins, mapped_pins
from reviewbot.checks.deps.pnpm import PnpmLock
from reviewbot.checks.deps.python import Pyproject, Requirements
from reviewbot.checks.deps.python_locks import Lockfile
from reviewbot.checks.deps.yarn import YarnLock
from reviewbot.models import ChangedFile, FileStatus, PinMapping

FORMATS: tuple[Format, ...] = (
    PackageJson(),
    PackageLock(),
    PnpmLock(),
    YarnLock(),
    Requirements(),
    Pyproject(),
    Lockfile("uv.lock"),
    Lockfile("poetry.lock"),
)

# Whole files above this are compared through their diff only (a bound on parse time).
MAX_WHOLE_BYTES = 20_000_000


def format_for(path: str) -> Format | None:
    return next((fmt for fmt in FORMATS if fmt.matches(path)), None)


def pin_applies(mapping: PinMapping, path: str) -> bool:
    return mapping.file == path or fnmatch.fnmatchcase(path, mapping.file)


@dataclass(frozen=True)
class FileDeps:
    """Dependencies a file introduces (each on a diff line when one fits) and notes."""

    deps: tuple[Dep, ...] = ()
    notes: tuple[str, ...] = ()


def introduced(changed: ChangedFile, pins: Sequence[PinMapping] = ()) -> FileDeps:
    fmt = format_for(changed.path)
    notes: list[str] = []
    deps = _from_format(changed, fmt, notes) if fmt is not None else []
    # Inline pins everywhere except where a Python parser already reads those lines (its
    # answer is authoritative there); package.json scripts do run `pip install x==1.2`.
    if fmt is None or fmt.label == "package.json":
        deps += _inline(changed)
    for mapping in pins:
        if pin_applies(mapping, changed.path):
            found, mapping_notes = mapped_pins(changed, mapping)
            deps += [_on_diff(changed, dep) for dep in found]
            notes += mapping_notes
    return FileDeps(tuple(_unique(deps)), tuple(notes))


def _whole(changed: ChangedFile) -> tuple[str, str | None] | None:
    """(head, base) when both whole sides are known (base None: the file is new)."""
    head = changed.head_text
    if head is None or changed.head_is_partial or len(head) > MAX_WHOLE_BYTES:
        return None
    base = changed.base_text
    if base is None and changed.status is not FileStatus.ADDED:
        return None
    if base is not None and len(base) > MAX_WHOLE_BYTES:
        return None
    return head, base


def _from_format(changed: ChangedFile, fmt: Format, notes: list[str]) -> list[Dep]:
    whole = _whole(changed)
    if whole is not None:
        head, base = whole
        try:
            deps = fmt.compare(head, base)
        except ParseError as error:
            notes.append(
                f"{changed.path}: could not read it as a {fmt.label} ({error}); "
                "only its changed lines were checked for dependency versions"
            )
        else:
            return _locate(changed, fmt, deps, lines_of(head))
    head_lines: Lines = changed.visible
    if changed.head_text is not None and not changed.head_is_partial:
        head_lines = lines_of(changed.head_text)
    found = fmt.scan(head_lines, changed.added.keys())
    # Any mention on a removed line is evidence the version was there before.
    removed = fmt.scan(changed.removed, changed.removed.keys())
    base_keys = {dep.key for dep in removed.deps + removed.uncertain}
    unclear = found.unresolved + len([d for d in found.uncertain if d.key not in base_keys])
    if unclear:
        notes.append(
            f"{changed.path}: {unclear} changed version line(s) could not be tied to "
            "a dependency from the diff alone; their age was not checked"
        )
    return [_on_diff(changed, dep) for dep in found.deps if dep.key not in base_keys]


def _locate(changed: ChangedFile, fmt: Format, deps: list[Dep], head: Lines) -> list[Dep]:
    """Put every dependency on the added lines that show it (several for nested copies)."""
    placed = [dep for dep in deps if dep.line in changed.added]
    missing = [dep for dep in deps if dep.line not in changed.added]
    if not missing:
        return placed
    by_key: dict[tuple[str, str, str], list[int]] = {}
    by_name: dict[tuple[str, str], list[int]] = {}
    for dep in fmt.scan(head, changed.added.keys()).deps:
        if dep.line is not None:
            by_key.setdefault(dep.key, []).append(dep.line)
            by_name.setdefault((dep.ecosystem, dep.name), []).append(dep.line)
    for dep in missing:
        lines = by_key.get(dep.key) or by_name.get((dep.ecosystem, dep.name))
        if lines:
            placed += [dep.at(line) for line in lines]
        else:
            placed.append(_on_diff(changed, dep))
    return placed


def _folded(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text.lower())


def _on_diff(changed: ChangedFile, dep: Dep) -> Dep:
    """Keep a line that is in the diff; otherwise the added line that best shows ``dep``.

    GitHub rejects a whole review when one comment is outside the diff, so a finding never
    points at an unchanged line while the change adds any line to the file.
    """
    if dep.line in changed.added or not changed.added:
        return dep if dep.line in changed.visible else dep.at(None)
    with_version = [n for n, text in changed.added.items() if dep.version in text]
    name = _folded(dep.name)
    with_both = [n for n in with_version if name in _folded(changed.added[n])]
    best = with_both or with_version or list(changed.added)
    target = dep.line or 0
    return dep.at(min(best, key=lambda n: (abs(n - target), n)))


def _inline(changed: ChangedFile) -> list[Dep]:
    head = inline_pins(changed.added, changed.added.keys(), changed.path)
    if not head:
        return []
    if changed.base_text is not None:
        base_lines = lines_of(changed.base_text)
        base = inline_pins(base_lines, base_lines.keys(), changed.base_path)
    else:
        base = inline_pins(changed.removed, changed.removed.keys(), changed.path)
    base_keys = {dep.key for dep in base}
    return [dep for dep in head if dep.key not in base_keys]


def _unique(deps: Iterable[Dep]) -> list[Dep]:
    seen: set[tuple[tuple[str, str, str], int | None]] = set()
    out: list[Dep] = []
    for dep in sorted(deps, key=lambda d: (d.line is None, d.line or 0, d.key)):
        if (dep.key, dep.line) not in seen:
            seen.add((dep.key, dep.line))
            out.append(dep)
    return out


__all__ = ["FORMATS", "Dep", "FileDeps", "format_for", "introduced", "pin_applies"]
