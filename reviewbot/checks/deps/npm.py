"""npm's package.json and package-lock.json (npm-shrinkwrap.json): exact versions installed.

Only exact versions count: a range in package.json ("^1.2.3") names no version, and the
lockfile beside it records the one actually installed, which is what gets dated. Git, GitHub,
tarball and ``file:``/``link:`` specs cannot be dated and are reported as such; workspace
packages and lockfile entries that point into the repository are not registry packages at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import Any

from reviewbot.checks.deps.base import (
    NPM,
    NPM_LOCAL_PREFIXES,
    NPM_SKIP_PREFIXES,
    Dep,
    Lines,
    ParseError,
    Scan,
    added_diff,
    basename,
    enclosing,
    indent_of,
    iter_focus,
    json_unquote,
    npm_exact,
    npm_remote,
    remote_reason,
    split_name_at,
)

_SECTIONS = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")
_OVERRIDE_SECTIONS = ("overrides", "resolutions")
_MAX_DEPTH = 64

_JSON_PAIR = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,?\s*$')
_JSON_OPEN = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*:\s*\{')
_JSON_FIELD = re.compile(r'^\s*"(version|resolved|name|link)"\s*:\s*("(?:[^"\\]|\\.)*"|true|false)')


def _load_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ParseError(f"not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ParseError("not a JSON object")
    return data


def spec_dep(name: str, spec: str) -> Dep | None:
    """What a package.json spec installs: an exact registry version, an undatable source, or
    nothing specific (a range, a tag, a workspace package)."""
    value = spec.strip()
    if value.startswith("npm:"):
        # Alias: "npm:real-name@1.2.3" installs real-name.
        aliased = split_name_at(value[4:])
        if aliased is None:
            return None
        return spec_dep(aliased[0], aliased[1])
    if value.startswith(NPM_SKIP_PREFIXES):
        return None
    if value.startswith(NPM_LOCAL_PREFIXES):
        return Dep(NPM, name, value, source="installed from a local path")
    if npm_remote(value):
        return Dep(NPM, name, value, source=remote_reason(value))
    exact = npm_exact(value)
    return Dep(NPM, name, exact) if exact else None


def _override_name(key: str) -> str:
    """``foo@1``, ``**/foo``, ``a/b``, ``a>b``: the package an override/resolution targets."""
    name = key.rsplit(">", 1)[-1].strip()
    parts = name.split("/")
    scoped = len(parts) >= 2 and parts[-2].startswith("@")
    name = "/".join(parts[-2:]) if scoped else parts[-1]
    split = split_name_at(name)
    return split[0] if split else name


def _overrides(value: object, depth: int = 0) -> Iterator[Dep]:
    if not isinstance(value, dict) or depth > _MAX_DEPTH:
        return
    for key, spec in value.items():
        name = _override_name(str(key))
        if isinstance(spec, str):
            dep = spec_dep(name, spec)
            if dep:
                yield dep
        elif isinstance(spec, dict):
            current = spec.get(".")
            if isinstance(current, str):
                dep = spec_dep(name, current)
                if dep:
                    yield dep
            yield from _overrides({k: v for k, v in spec.items() if k != "."}, depth + 1)


def manifest_deps(data: dict[str, Any]) -> list[Dep]:
    deps: list[Dep] = []
    for section in _SECTIONS:
        entries = data.get(section)
        if isinstance(entries, dict):
            for name, spec in entries.items():
                if isinstance(spec, str):
                    dep = spec_dep(str(name), spec)
                    if dep:
                        deps.append(dep)
    for section in _OVERRIDE_SECTIONS:
        deps.extend(_overrides(data.get(section)))
    pnpm = data.get("pnpm")
    if isinstance(pnpm, dict):
        deps.extend(_overrides(pnpm.get("overrides")))
    return deps


def _json_chain(lines: Lines, number: int) -> list[str] | None:
    """Keys of the objects enclosing ``number``, innermost first; None if a gap hides them."""
    keys: list[str] = []
    current = number
    text = lines[number]
    while True:
        parent = enclosing(lines, current, indent_of(text))
        if parent is None:
            return None
        text = lines[parent]
        opened = _JSON_OPEN.match(text)
        if opened:
            keys.append(json_unquote(opened.group(1)))
        elif not text.strip().startswith("{"):
            return keys  # inside an array or something else: not a dependency map
        # npm writes two-space JSON: a key that far left is top-level even when the diff
        # does not show the opening brace above it.
        if indent_of(text) <= 2:
            return keys
        current = parent


class PackageJson:
    label = "package.json"

    def matches(self, path: str) -> bool:
        return basename(path) == "package.json"

    def compare(self, head: str, base: str | None) -> list[Dep]:
        base_keys = {d.key for d in manifest_deps(_load_json(base))} if base else set()
        return added_diff(manifest_deps(_load_json(head)), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        scan = Scan()
        for number, text in iter_focus(lines, focus):
            pair = _JSON_PAIR.match(text)
            if not pair:
                continue
            name, spec = json_unquote(pair.group(1)), json_unquote(pair.group(2))
            chain = _json_chain(lines, number)
            if name == "." and chain:
                name = _override_name(chain[0])
            elif chain and any(key in _OVERRIDE_SECTIONS for key in chain):
                name = _override_name(name)
            dep = spec_dep(name, spec)
            if dep is None:
                continue
            if chain is None:
                # Two-space indented keys are the manifest's own fields ("version"), not
                # dependencies; deeper ones could be either.
                if indent_of(text) > 2:
                    scan.uncertain.append(dep.at(number))
            elif chain and (
                chain[-1] in _SECTIONS + _OVERRIDE_SECTIONS
                or (chain[-1] == "pnpm" and "overrides" in chain)
            ):
                scan.deps.append(dep.at(number))
        return scan


# ---- package-lock.json ---------------------------------------------------------------------


def _lock_dep(name: str, version: object, resolved: object) -> Dep | None:
    """One installed package of a package-lock (v1, v2 or v3)."""
    if not isinstance(version, str):
        return None
    if isinstance(resolved, str):
        if resolved.startswith(NPM_LOCAL_PREFIXES):
            return None  # a folder of this repository, not a download
        if resolved.startswith(("git", "github:", "ssh:")):
            return Dep(NPM, name, resolved, source="installed from a git repository")
        # Registry tarballs, the public one and private ones alike, live under "/-/".
        if resolved.startswith(("http:", "https:")) and "/-/" not in resolved:
            return Dep(NPM, name, resolved, source="installed from a tarball outside the registry")
    if version.startswith(NPM_LOCAL_PREFIXES) or version.startswith(NPM_SKIP_PREFIXES):
        return None
    if version.startswith("npm:"):  # v1 alias: "npm:real@1.2.3"
        aliased = split_name_at(version[4:])
        return _lock_dep(aliased[0], aliased[1], resolved) if aliased else None
    exact = npm_exact(version)
    if exact:
        return Dep(NPM, name, exact)
    if npm_remote(version):
        return Dep(NPM, name, version, source=remote_reason(version))
    return Dep(NPM, name, version, source="not a registry version")


def lock_deps(data: dict[str, Any]) -> list[Dep]:
    deps: list[Dep] = []
    packages = data.get("packages")
    if isinstance(packages, dict):
        for key, entry in packages.items():
            where = str(key).rfind("node_modules/")
            # "" is the project itself; keys without node_modules/ are workspace folders.
            if where < 0 or not isinstance(entry, dict) or entry.get("link"):
                continue
            name = entry.get("name")
            if not isinstance(name, str):
                name = str(key)[where + len("node_modules/") :]
            dep = _lock_dep(name, entry.get("version"), entry.get("resolved"))
            if dep:
                deps.append(dep)
        return deps
    # lockfileVersion 1: a tree of "dependencies".
    stack: list[tuple[object, int]] = [(data.get("dependencies"), 0)]
    while stack:
        tree, depth = stack.pop()
        if not isinstance(tree, dict) or depth > _MAX_DEPTH:
            continue
        for name, entry in tree.items():
            if not isinstance(entry, dict):
                continue
            dep = _lock_dep(str(name), entry.get("version"), entry.get("resolved"))
            if dep:
                deps.append(dep)
            stack.append((entry.get("dependencies"), depth + 1))
    return deps


class PackageLock:
    label = "package-lock.json"

    def matches(self, path: str) -> bool:
        return basename(path) in ("package-lock.json", "npm-shrinkwrap.json")

    def compare(self, head: str, base: str | None) -> list[Dep]:
        base_keys = {d.key for d in lock_deps(_load_json(base))} if base else set()
        return added_diff(lock_deps(_load_json(head)), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        scan = Scan()
        owners: dict[int, None] = {}
        for number, text in iter_focus(lines, focus):
            opened = _JSON_OPEN.match(text)
            if opened and "node_modules/" in opened.group(1):
                owners[number] = None
            elif _JSON_FIELD.match(text):
                owner = enclosing(lines, number, indent_of(text))
                if owner is None:
                    if text.lstrip().startswith('"version"'):
                        scan.unresolved += 1
                elif _JSON_OPEN.match(lines[owner]):
                    owners[owner] = None
        installed: list[Dep] = []
        legacy: list[Dep] = []
        for owner in owners:
            entry = self._entry(lines, owner, focus, scan)
            if entry:
                (installed if entry[1] else legacy).append(entry[0])
        # v2 lockfiles repeat every package in a v1-style "dependencies" tree: show the
        # "packages" entry and fall back to the tree only for v1 files.
        shown = {dep.key for dep in installed}
        scan.deps = installed + [dep for dep in legacy if dep.key not in shown]
        return scan

    def _entry(
        self, lines: Lines, owner: int, focus: Collection[int], scan: Scan
    ) -> tuple[Dep, bool] | None:
        """The package whose object opens on line ``owner``, and whether it is keyed by path."""
        opened = _JSON_OPEN.match(lines[owner])
        if not opened:
            return None
        key = json_unquote(opened.group(1))
        fields: dict[str, tuple[str, int]] = {}
        own_indent = indent_of(lines[owner])
        number = owner + 1
        child_indent: int | None = None
        # The fields that matter come first; nested maps ("dependencies") end the look.
        while (text := lines.get(number)) is not None and number - owner < 50:
            if text.strip() and indent_of(text) <= own_indent:
                break
            child_indent = child_indent or indent_of(text)
            if indent_of(text) == child_indent:
                field = _JSON_FIELD.match(text)
                if field:
                    fields.setdefault(field.group(1), (field.group(2).strip('"'), number))
                elif _JSON_OPEN.match(text) or text.rstrip().endswith("["):
                    break
            number += 1
        version = fields.get("version")
        if version is None or not (version[1] in focus or owner in focus):
            return None
        where = key.rfind("node_modules/")
        if where >= 0:
            name = key[where + len("node_modules/") :]
        elif key:
            parent = enclosing(lines, owner, own_indent)
            if parent is None:
                # Out of sight: a v1 "dependencies" entry or a v2 workspace folder. Only an
                # installed package has a download URL or a non-semver (git) version.
                if "resolved" not in fields and npm_exact(json_unquote(version[0])):
                    scan.unresolved += 1
                    return None
            else:
                outer = _JSON_OPEN.match(lines[parent])
                if not outer or json_unquote(outer.group(1)) != "dependencies":
                    return None  # a workspace folder under "packages", not a download
            name = key
        else:
            return None
        if "link" in fields and fields["link"][0] == "true":
            return None
        if "name" in fields:
            name = json_unquote(fields["name"][0])
        resolved = fields.get("resolved")
        dep = _lock_dep(
            name, json_unquote(version[0]), json_unquote(resolved[0]) if resolved else None
        )
        return (dep.at(version[1]), where >= 0) if dep else None
