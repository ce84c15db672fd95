"""pnpm-lock.yaml: package keys of every lockfile generation, parsed entry by entry.

Keys are ``/name/1.0.0_peer`` (v5), ``/name@1.0.0(peer)`` (v6) and ``name@1.0.0(peer)`` (v9,
which lists each package again under ``snapshots``). Only the ``packages`` map names what is
downloaded; ``importers`` repeat the same versions. Entries resolved from a directory are
workspace packages; git and tarball resolutions cannot be dated.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from reviewbot.checks.deps.base import (
    NPM,
    NPM_LOCAL_PREFIXES,
    NPM_NAME,
    NPM_SKIP_PREFIXES,
    Block,
    Dep,
    Lines,
    ParseError,
    Scan,
    added_diff,
    basename,
    blockwise,
    iter_focus,
    json_unquote,
    load_yaml,
    npm_exact,
    remote_reason,
    split_blocks,
    split_name_at,
)

_PNPM_KEY = re.compile(
    r"""^  (?:'((?:[^']|'')*)'|"((?:[^"\\]|\\.)*)"|([^\s'"#?](?:[^:]|:(?=\S))*?))"""
    r"""\s*:(?:\s+\{\})?\s*$"""
)
_SECTION = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")


def pnpm_key(key: str) -> tuple[str, str] | None:
    """(name, version) of a pnpm package key in any lockfile generation.

    v9 ``name@1.0.0(peer@2)``, v6 ``/name@1.0.0(peer@2)``, v5 ``/name/1.0.0_peer@2``.
    """
    value = key.strip().lstrip("/")
    paren = value.find("(")
    if paren > 0:
        value = value[:paren]
    split = split_name_at(value)
    if split and NPM_NAME.match(split[0]):
        return split
    slash = value.rfind("/")
    if slash <= 0:
        return None
    name, version = value[:slash], value[slash + 1 :]
    if not NPM_NAME.match(name) or not version[:1].isdigit():
        return None
    underscore = version.find("_")
    return name, version[:underscore] if underscore > 0 else version


def pnpm_dep(key: str, entry: object) -> Dep | None:
    parsed = pnpm_key(key)
    details = entry if isinstance(entry, dict) else {}
    name, version = parsed if parsed else (details.get("name"), details.get("version"))
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    resolution = details.get("resolution")
    if isinstance(resolution, dict):
        if "directory" in resolution or resolution.get("type") == "directory":
            return None
        if resolution.get("type") == "git" or "repo" in resolution:
            source = f"{resolution.get('repo')}#{resolution.get('commit')}"
            return Dep(NPM, name, source, source="installed from a git repository")
        tarball = resolution.get("tarball")
        if isinstance(tarball, str):
            if tarball.startswith("file:"):
                return None
            # A name@version key with a tarball is a package from another registry; a key
            # that is no name@version (github.com/user/repo/sha) is a download from elsewhere.
            if parsed is None or npm_exact(version) is None:
                return Dep(
                    NPM, name, tarball, source="installed from a tarball outside the registry"
                )
    if version.startswith(NPM_LOCAL_PREFIXES + NPM_SKIP_PREFIXES):
        return None
    exact = npm_exact(version)
    if exact:
        return Dep(NPM, name, exact)
    return Dep(NPM, name, version, source=remote_reason(version))


def _key_text(match: re.Match[str]) -> str:
    single, double, plain = match.groups()[:3]
    if single is not None:
        return single.replace("''", "'")
    if double is not None:
        return json_unquote(double)
    return plain or ""


class _PnpmBlocks:
    def blocks(self, text: str) -> list[Block]:
        lines = text.split("\n")
        bounds: list[tuple[int, bool]] = []
        in_packages = False
        for index, line in enumerate(lines):
            if not line or line[0] in " \t#":
                if in_packages and line.startswith("  ") and line[2:3] not in (" ", "#", ""):
                    bounds.append((index, True))
                continue
            section = _SECTION.match(line)
            if section is None:
                raise ParseError(f"unexpected line {index + 1}")
            in_packages = section.group(1) == "packages"
            if in_packages and section.group(2).split("#", 1)[0].strip():
                raise ParseError("packages is not a block mapping")
            bounds.append((index, False))
        return split_blocks(lines, bounds)

    def parse_block(self, block: Block) -> list[Dep]:
        data = load_yaml("packages:\n" + block.text)
        entries = data.get("packages") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or len(entries) != 1:
            raise ParseError(f"entry at line {block.start} is not one package")
        ((key, entry),) = entries.items()
        dep = pnpm_dep(str(key), entry)
        return [dep.at(block.start)] if dep else []

    def name_of(self, block: Block) -> str | None:
        first = block.text.split("\n", 1)[0]
        match = _PNPM_KEY.match(first)
        parsed = pnpm_key(_key_text(match)) if match else None
        return parsed[0] if parsed else None


def _pnpm_full(text: str) -> list[Dep]:
    data = load_yaml(text)
    packages = data.get("packages") if isinstance(data, dict) else None
    if packages is None:
        return []
    if not isinstance(packages, dict):
        raise ParseError("packages is not a mapping")
    return [dep for key, entry in packages.items() if (dep := pnpm_dep(str(key), entry))]


class PnpmLock:
    label = "pnpm-lock.yaml"

    def matches(self, path: str) -> bool:
        return basename(path) in ("pnpm-lock.yaml", "shrinkwrap.yaml")

    def compare(self, head: str, base: str | None) -> list[Dep]:
        try:
            return blockwise(_PnpmBlocks(), head, base)
        except ParseError:
            base_keys = {d.key for d in _pnpm_full(base)} if base else set()
            return added_diff(_pnpm_full(head), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        scan = Scan()
        seen: set[tuple[str, str, str]] = set()
        for number, text in iter_focus(lines, focus):
            match = _PNPM_KEY.match(text)
            if not match:
                continue
            following = lines.get(number + 1, "")
            entry: dict[str, object] = {}
            if "resolution:" in following:
                loaded = _yaml_or_none(following.strip())
                if isinstance(loaded, dict):
                    entry = loaded
            dep = pnpm_dep(_key_text(match), entry)
            # v9 lists a package under "packages" and again under "snapshots": keep the first.
            if dep and dep.key not in seen:
                seen.add(dep.key)
                scan.deps.append(dep.at(number))
        return scan


def _yaml_or_none(text: str) -> object:
    try:
        return load_yaml(text)
    except ParseError:
        return None
