"""yarn.lock: classic (v1, yarn's own format) and berry (YAML) lockfiles.

Classic entries are ``"name@range", name@range2:`` headers with ``version`` and ``resolved``
lines, read line by line (that is the format). Berry entries are YAML mappings whose
``resolution: "name@npm:1.2.3"`` says exactly what was installed and from where.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from reviewbot.checks.deps.base import (
    NPM,
    NPM_LOCAL_PREFIXES,
    NPM_SKIP_PREFIXES,
    Block,
    Dep,
    Lines,
    ParseError,
    Scan,
    added_diff,
    basename,
    blockwise,
    enclosing,
    indent_of,
    iter_focus,
    line_in_block,
    load_yaml,
    npm_exact,
    npm_remote,
    remote_reason,
    split_blocks,
    split_name_at,
)

_YARN_VERSION = re.compile(r'^ {2}version:?\s+"?([^"\s]+)"?\s*$')
_YARN_RESOLVED = re.compile(r'^ {2}resolved:?\s+"?([^"\s]+)"?\s*$')
_BERRY_RESOLUTION = re.compile(r'^ {2}resolution:\s*"?(.+?)"?\s*$')
_BERRY_VERSION = re.compile(r"^ {2}version:\s")
_BERRY_SKIP = ("workspace:", "link:", "portal:", "file:", "patch:", "exec:")


def _classic_dep(header: str, version: str, resolved: str | None) -> Dep | None:
    """A yarn v1 entry: ``"name@range", name@range2:`` with ``version`` and ``resolved``."""
    first = header.rstrip().rstrip(":").split(",")[0].strip().strip('"')
    split = split_name_at(first)
    if split is None:
        return None
    name, wanted = split
    if wanted.startswith("npm:"):
        aliased = split_name_at(wanted[4:])
        if aliased:
            name, wanted = aliased
    if wanted.startswith(NPM_LOCAL_PREFIXES + NPM_SKIP_PREFIXES):
        return None
    if npm_remote(wanted):
        source = resolved or wanted
        return Dep(NPM, name, source, source=remote_reason(source))
    exact = npm_exact(version)
    if exact:
        return Dep(NPM, name, exact)
    return Dep(NPM, name, version, source="not a registry version")


def _classic_full(text: str) -> list[Dep]:
    deps: list[Dep] = []
    header: str | None = None
    version: tuple[str, int] | None = None
    resolved: str | None = None

    def flush() -> None:
        if header is not None and version is not None:
            dep = _classic_dep(header, version[0], resolved)
            if dep:
                deps.append(dep.at(version[1]))

    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        if line[0] not in " \t":
            flush()
            header, version, resolved = line, None, None
            continue
        if version is None and (match := _YARN_VERSION.match(line)):
            version = (match.group(1), number)
        elif resolved is None and (match := _YARN_RESOLVED.match(line)):
            resolved = match.group(1)
    flush()
    return deps


def berry_dep(resolution: str) -> Dep | None:
    split = split_name_at(resolution.strip())
    if split is None:
        return None
    name, reference = split
    if reference.startswith("npm:"):
        exact = npm_exact(reference[4:])
        if exact:
            return Dep(NPM, name, exact)
        return Dep(NPM, name, reference, source="not a registry version")
    if reference.startswith(_BERRY_SKIP):
        return None
    return Dep(NPM, name, reference, source=remote_reason(reference))


class _BerryBlocks:
    def blocks(self, text: str) -> list[Block]:
        lines = text.split("\n")
        bounds = [
            (index, not line.startswith("__metadata"))
            for index, line in enumerate(lines)
            if line and line[0] not in " \t#"
        ]
        return split_blocks(lines, bounds)

    def parse_block(self, block: Block) -> list[Dep]:
        data = load_yaml(block.text)
        if not isinstance(data, dict) or len(data) != 1:
            raise ParseError(f"entry at line {block.start} is not one package")
        (entry,) = data.values()
        resolution = entry.get("resolution") if isinstance(entry, dict) else None
        dep = berry_dep(resolution) if isinstance(resolution, str) else None
        return [dep.at(line_in_block(block, _BERRY_VERSION))] if dep else []

    def name_of(self, block: Block) -> str | None:
        for line in block.text.split("\n"):
            match = _BERRY_RESOLUTION.match(line)
            if match:
                split = split_name_at(match.group(1))
                return split[0] if split else None
        return None


def _berry_full(text: str) -> list[Dep]:
    data = load_yaml(text)
    if not isinstance(data, dict):
        raise ParseError("not a YAML mapping")
    deps: list[Dep] = []
    for key, entry in data.items():
        if key == "__metadata" or not isinstance(entry, dict):
            continue
        resolution = entry.get("resolution")
        dep = berry_dep(resolution) if isinstance(resolution, str) else None
        if dep:
            deps.append(dep)
    return deps


def _yarn_full(text: str) -> list[Dep]:
    return _berry_full(text) if is_berry(text) else _classic_full(text)


def is_berry(text: str) -> bool:
    return re.search(r"^__metadata:", text[:4000], re.MULTILINE) is not None


class YarnLock:
    label = "yarn.lock"

    def matches(self, path: str) -> bool:
        return basename(path) == "yarn.lock"

    def compare(self, head: str, base: str | None) -> list[Dep]:
        if is_berry(head) and (base is None or is_berry(base)):
            try:
                return blockwise(_BerryBlocks(), head, base)
            except ParseError:
                pass  # laid out unusually: parse both whole below
        base_keys = {d.key for d in _yarn_full(base)} if base else set()
        return added_diff(_yarn_full(head), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        scan = Scan()
        for number, text in iter_focus(lines, focus):
            resolution = _BERRY_RESOLUTION.match(text)
            if resolution:
                dep = berry_dep(resolution.group(1))
                if dep:
                    above = number - 1
                    at_version = above in focus and _BERRY_VERSION.match(lines.get(above, ""))
                    scan.deps.append(dep.at(above if at_version else number))
                continue
            version = _YARN_VERSION.match(text)
            if not version or text.lstrip().startswith("version:"):
                continue  # berry's version line: its resolution line says more
            header = enclosing(lines, number, indent_of(text))
            if header is None:
                scan.unresolved += 1
                continue
            resolved = None
            for after in (number + 1, number + 2):
                found = _YARN_RESOLVED.match(lines.get(after, ""))
                if found:
                    resolved = found.group(1)
            dep = _classic_dep(lines[header], version.group(1), resolved)
            if dep:
                scan.deps.append(dep.at(number))
        return scan
