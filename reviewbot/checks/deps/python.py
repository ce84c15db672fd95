"""Python manifests: requirements*.txt / *.in and pyproject.toml, exact pins only.

Only exact pins count (``==1.2.3``, ``===x``; Poetry ``=1.2.3``): a range or a Poetry bare
version (which means ``^``) names no version. Names are canonicalised and versions normalised
with ``packaging`` so that ``Foo_Bar==1.0`` and ``foo-bar==1.0.0`` compare as pip sees them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterator
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from reviewbot.checks.deps.base import (
    PYPI,
    Dep,
    Lines,
    Scan,
    added_diff,
    basename,
    iter_focus,
    lines_of,
    load_toml,
)

_URL_START = re.compile(r"^[A-Za-z][\w+.-]*://")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_OPTION = re.compile(r"\s--?[A-Za-z][\w-]*(?:[=\s]\S+)?")


def normal_version(text: str) -> str:
    """PEP 440 normal form ("1.02" → "1.2"), or the text itself when it is not PEP 440."""
    try:
        return str(Version(text))
    except InvalidVersion:
        return text.strip()


def exact_version(requirement: Requirement) -> str | None:
    """The version a requirement pins exactly, if any (``==1.2.*`` is a range)."""
    for spec in requirement.specifier:
        if spec.operator == "===":
            return spec.version
        if spec.operator == "==" and not spec.version.endswith(".*"):
            return normal_version(spec.version)
    return None


def requirement_dep(text: str) -> Dep | None:
    """A PEP 508 string: an exact registry pin, a URL requirement, or None."""
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement:
        return None
    name = canonicalize_name(requirement.name)
    if requirement.url:
        return Dep(PYPI, name, requirement.url, source="installed from a URL")
    version = exact_version(requirement)
    return Dep(PYPI, name, version) if version else None


# ---- requirements files --------------------------------------------------------------------


def _is_requirements(path: str) -> bool:
    name = basename(path)
    if not name.endswith((".txt", ".in")):
        return False
    stem = name.rsplit(".", 1)[0]
    return (
        stem.startswith(("requirements", "constraints"))
        or stem.endswith(("requirements", "constraints"))
        or "/requirements/" in f"/{path}"
    )


def _logical_lines(lines: Lines, numbers: Collection[int]) -> Iterator[tuple[str, list[int]]]:
    """Requirement lines with backslash continuations joined, and the lines they span."""
    pending: list[str] = []
    spanned: list[int] = []
    previous = None
    for number in sorted(numbers):
        text = lines.get(number)
        if text is None:
            continue
        if pending and previous is not None and number != previous + 1:
            yield " ".join(pending), spanned  # a continuation we cannot see: take what we have
            pending, spanned = [], []
        previous = number
        stripped = _COMMENT.sub("", text).rstrip()
        spanned.append(number)
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        yield " ".join(pending), spanned
        pending, spanned = [], []
    if pending:
        yield " ".join(pending), spanned


def _archive_name(url: str) -> str:
    """The project name in a wheel or sdist file name (``name-1.0-py3-none-any.whl``)."""
    filename = url.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if filename.endswith(".whl"):
        return filename.split("-", 1)[0]
    for suffix in (".tar.gz", ".zip", ".tar.bz2", ".tgz"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)].rsplit("-", 1)[0]
    return filename


def _requirement_line(text: str) -> Dep | None:
    line = text.strip()
    if not line:
        return None
    editable = re.match(r"^(?:-e|--editable)(?:\s+|=)(\S+)", line)
    if editable:
        line = editable.group(1)
    elif line.startswith("-"):
        return None  # -r, -c, --index-url, ...: not a requirement
    if _URL_START.match(line):
        target = line.split()[0]
        egg = _EGG.search(target)
        name = egg.group(1) if egg else _archive_name(target)
        return Dep(PYPI, canonicalize_name(name), target, source="installed from a URL")
    if line.startswith((".", "/")) or editable:
        return None  # a folder of this repository
    # Per-requirement options ("--hash=...") follow the requirement itself.
    return requirement_dep(_OPTION.split(" " + line, maxsplit=1)[0])


def requirements_deps(lines: Lines, numbers: Collection[int]) -> list[Dep]:
    deps: list[Dep] = []
    for text, spanned in _logical_lines(lines, numbers):
        dep = _requirement_line(text)
        if dep is None:
            continue
        # Show the physical line that carries the version.
        where = next((n for n in spanned if dep.version in lines[n]), spanned[0])
        deps.append(dep.at(where))
    return deps


class Requirements:
    label = "requirements file"

    def matches(self, path: str) -> bool:
        return _is_requirements(path)

    def compare(self, head: str, base: str | None) -> list[Dep]:
        head_lines = lines_of(head)
        base_lines = lines_of(base) if base else {}
        base_keys = {d.key for d in requirements_deps(base_lines, base_lines.keys())}
        return added_diff(requirements_deps(head_lines, head_lines.keys()), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        return Scan(requirements_deps(lines, focus))


# ---- pyproject.toml ------------------------------------------------------------------------


def _table(data: object, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def poetry_dep(name: str, spec: object) -> Iterator[Dep]:
    """A Poetry dependency: "=1.2.3" is exact, a bare "1.2.3" means ^1.2.3."""
    canonical = canonicalize_name(name)
    if isinstance(spec, list):
        for item in spec:
            yield from poetry_dep(name, item)
        return
    if isinstance(spec, dict):
        for kind in ("git", "url"):
            location = spec.get(kind)
            if isinstance(location, str):
                ref = next((spec[k] for k in ("rev", "tag", "branch") if k in spec), None)
                source = f"{location}#{ref}" if ref else location
                yield Dep(PYPI, canonical, source, source=f"installed from a {kind} source")
                return
        if "path" in spec:
            return  # a folder of this repository
        spec = spec.get("version")
    if isinstance(spec, str):
        value = spec.strip()
        if value.startswith("=") and not value.startswith("=>"):
            pinned = value.lstrip("=").strip()
            if pinned and "," not in pinned and "*" not in pinned:
                yield Dep(PYPI, canonical, normal_version(pinned))


def _uv_sources(data: dict[str, Any]) -> dict[str, Any]:
    sources = _table(data, "tool", "uv", "sources")
    return {canonicalize_name(str(k)): v for k, v in sources.items()}


def pyproject_deps(data: dict[str, Any]) -> list[Dep]:
    strings: list[str] = []
    project = _table(data, "project")
    strings += _strings(project.get("dependencies"))
    for group in _table(project, "optional-dependencies").values():
        strings += _strings(group)
    for group in _table(data, "dependency-groups").values():
        strings += _strings(group)  # {include-group = "x"} tables name no package
    strings += _strings(_table(data, "build-system").get("requires"))
    uv = _table(data, "tool", "uv")
    for key in ("dev-dependencies", "constraint-dependencies", "override-dependencies"):
        strings += _strings(uv.get(key))
    for group in _table(data, "tool", "pdm", "dev-dependencies").values():
        strings += _strings(group)
    sources = _uv_sources(data)
    deps: list[Dep] = []
    for text in strings:
        dep = requirement_dep(text)
        if dep is None:
            continue
        source = sources.get(dep.name)
        if isinstance(source, dict) and dep.source is None:
            if "git" in source or "url" in source:
                where = str(source.get("git") or source.get("url"))
                ref = next((source[k] for k in ("rev", "tag", "branch") if k in source), None)
                where = f"{where}#{ref}" if ref else where
                dep = Dep(
                    PYPI,
                    dep.name,
                    where,
                    source="installed from a git or URL source (tool.uv.sources)",
                )
            elif "path" in source or "workspace" in source:
                continue
        deps.append(dep)
    poetry = _table(data, "tool", "poetry")
    tables = [_table(poetry, "dependencies"), _table(poetry, "dev-dependencies")]
    tables += [_table(group, "dependencies") for group in _table(poetry, "group").values()]
    for table in tables:
        for name, spec in table.items():
            if canonicalize_name(str(name)) != "python":
                deps.extend(poetry_dep(str(name), spec))
    return deps


_QUOTED = re.compile(r""""([^"\n]*)"|'([^'\n]*)'""")
_NOT_DEPENDENCIES = frozenset({"name", "version", "python", "requires-python", "description"})


def pyproject_scan(lines: Lines, focus: Collection[int]) -> Scan:
    """Pins on changed lines of a pyproject.toml whose surroundings are not known.

    PEP 508 strings are recognised anywhere; a ``name = spec`` line is read as a Poetry
    dependency (only ``=``-pinned versions and git/url tables count, so other keys are inert).
    """
    scan = Scan()
    for number, text in iter_focus(lines, focus):
        if text.lstrip().startswith("#"):
            continue
        found = False
        for quoted in _QUOTED.finditer(text):
            value = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            if "==" in value or "@" in value:
                dep = requirement_dep(value)
                if dep:
                    scan.deps.append(dep.at(number))
                    found = True
        if found:
            continue
        try:
            table = tomllib.loads(text.strip())
        except tomllib.TOMLDecodeError:
            continue
        if len(table) != 1:
            continue
        ((name, spec),) = table.items()
        if name not in _NOT_DEPENDENCIES:
            scan.deps.extend(dep.at(number) for dep in poetry_dep(name, spec))
    return scan


class Pyproject:
    label = "pyproject.toml"

    def matches(self, path: str) -> bool:
        return basename(path) == "pyproject.toml"

    def compare(self, head: str, base: str | None) -> list[Dep]:
        base_keys = {d.key for d in pyproject_deps(load_toml(base))} if base else set()
        return added_diff(pyproject_deps(load_toml(head)), base_keys)

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        return pyproject_scan(lines, focus)
