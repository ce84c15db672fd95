"""uv.lock and poetry.lock: ``[[package]]`` entries, parsed entry by entry with tomllib.

Both list each package with ``name``, ``version`` and where it came from: uv in a
``source = {registry|git|url|editable|virtual|path|directory = ...}`` table, Poetry in
``[package.source]`` (``type = "git" | "url" | "file" | "directory" | "legacy"``). Git and
URL sources cannot be dated; editable, virtual and path entries are this repository's own.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from typing import Any

from packaging.utils import canonicalize_name

from reviewbot.checks.deps.base import (
    PYPI,
    Block,
    Dep,
    Lines,
    ParseError,
    Scan,
    added_diff,
    basename,
    blockwise,
    iter_focus,
    line_in_block,
    load_toml,
    split_blocks,
)
from reviewbot.checks.deps.python import normal_version

_PACKAGE_HEADER = re.compile(r"^\s*\[\[\s*package\s*\]\]\s*(?:#.*)?$")
_PACKAGE_SUBTABLE = re.compile(r"^\s*\[\[?\s*package\s*\.")
_TABLE_HEADER = re.compile(r"^\s*\[")
_NAME_LINE = re.compile(r'^name\s*=\s*"([^"]+)"')
_VERSION_LINE = re.compile(r'^version\s*=\s*"([^"]+)"')
_LOCAL_KINDS = ("editable", "virtual", "path", "directory", "workspace", "file")
_REMOTE_KINDS = ("git", "url")


def locked_dep(entry: object) -> Dep | None:
    """One ``[[package]]`` of uv.lock or poetry.lock."""
    if not isinstance(entry, dict):
        return None
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str):
        return None
    canonical = canonicalize_name(name)
    source = entry.get("source")
    if isinstance(source, dict):
        kind = str(source.get("type", "")) or next(iter(source), "")  # poetry: type=; uv: key
        if kind in _LOCAL_KINDS:
            return None
        if kind in _REMOTE_KINDS:
            where = str(source.get("url") or source.get(kind) or f"a {kind} source")
            ref = source.get("resolved_reference") or source.get("reference")
            where = f"{where}#{ref}" if ref and "#" not in where else where
            return Dep(PYPI, canonical, where, source=f"installed from a {kind} source")
    if not isinstance(version, str):
        return None
    return Dep(PYPI, canonical, normal_version(version))


class _LockBlocks:
    def blocks(self, text: str) -> list[Block]:
        lines = text.split("\n")
        bounds: list[tuple[int, bool]] = []
        for index, line in enumerate(lines):
            if not line.lstrip().startswith("["):
                continue
            if _PACKAGE_HEADER.match(line):
                bounds.append((index, True))
            elif not _PACKAGE_SUBTABLE.match(line) and _TABLE_HEADER.match(line):
                bounds.append((index, False))
        return split_blocks(lines, bounds)

    def parse_block(self, block: Block) -> list[Dep]:
        packages = load_toml(block.text).get("package")
        if not isinstance(packages, list) or len(packages) != 1:
            raise ParseError(f"entry at line {block.start} is not one package")
        dep = locked_dep(packages[0])
        return [dep.at(line_in_block(block, _VERSION_LINE))] if dep else []

    def name_of(self, block: Block) -> str | None:
        for line in block.text.split("\n"):
            match = _NAME_LINE.match(line)
            if match:
                return canonicalize_name(match.group(1))
        return None


def _lock_full(text: str) -> list[Dep]:
    packages = load_toml(text).get("package", [])
    if not isinstance(packages, list):
        raise ParseError("package is not an array of tables")
    return [dep for entry in packages if (dep := locked_dep(entry))]


def lock_scan(lines: Lines, focus: Collection[int]) -> Scan:
    """Changed ``version = "..."`` lines, named by the ``name`` line above them."""
    scan = Scan()
    for number, text in iter_focus(lines, focus):
        version = _VERSION_LINE.match(text)
        if not version:
            continue
        name = None
        above = number - 1
        while (line := lines.get(above)) is not None and not _PACKAGE_HEADER.match(line):
            match = _NAME_LINE.match(line)
            if match:
                name = match.group(1)
                break
            above -= 1
        if name is None:
            scan.unresolved += 1
            continue
        entry: dict[str, Any] = {"name": name, "version": version.group(1)}
        source = _source_below(lines, number)
        if source:
            entry["source"] = source
        dep = locked_dep(entry)
        if dep:
            scan.deps.append(dep.at(number))
    return scan


def _source_below(lines: Lines, number: int) -> dict[str, Any] | None:
    """The entry's source as far as the lines show it: uv's ``source = {...}`` line, or the
    keys under Poetry's ``[package.source]``."""
    poetry: dict[str, Any] | None = None
    below = number + 1
    while (line := lines.get(below)) is not None and not _PACKAGE_HEADER.match(line):
        stripped = line.strip()
        if stripped.startswith("["):
            if poetry is not None:
                break
            if stripped.replace(" ", "") == "[package.source]":
                poetry = {}
        elif poetry is not None or stripped.startswith("source"):
            try:
                pair = tomllib.loads(stripped)
            except tomllib.TOMLDecodeError:
                pair = {}
            if poetry is not None:
                poetry.update(pair)
            elif isinstance(pair.get("source"), dict):
                return dict(pair["source"])
        below += 1
    return poetry


class Lockfile:
    """uv.lock and poetry.lock share the ``[[package]]`` name/version/source layout."""

    def __init__(self, filename: str) -> None:
        self.label = filename

    def matches(self, path: str) -> bool:
        return basename(path) == self.label

    def compare(self, head: str, base: str | None) -> list[Dep]:
        try:
            return blockwise(_LockBlocks(), head, base)
        except ParseError:
            base_keys = {d.key for d in _lock_full(base)} if base else set()
            return added_diff(_lock_full(head), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        return lock_scan(lines, focus)
