"""Pins outside manifests: ``name==1.2.3`` on any changed line, and guideline-mapped keys.

A Dockerfile ``pip install x==1.2.3``, a workflow's ``uvx --from x==1.2.3`` or a test that
expects that string all install (or assert) one exact PyPI version, so they are dated like a
lockfile entry. A guideline can also say "the value at ``versions.agentServer`` in
``config.json`` is the version of ``pypi:openhands-agent-server``".
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from reviewbot.checks.deps.base import (
    NPM,
    PYPI,
    Dep,
    Lines,
    enclosing,
    indent_of,
    iter_focus,
    lines_of,
    npm_exact,
)
from reviewbot.models import ChangedFile, FileStatus, PinMapping

# Only a real pin: "name==1.2" with at least one dot, not part of a longer word or path, and
# not "a == b" comparisons with spaces. Code files also need it inside a string or comment.
_INLINE = re.compile(
    r"(?<![\w.\-=!<>~/@$%:])"
    r"([A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z])"
    r"(?:\[[A-Za-z0-9_.,\s-]*\])?"
    r"==(?!=)"
    r"([0-9]+(?:\.[0-9A-Za-z!+_-]+)+)"
)
_NOT_PACKAGES = frozenset({"python", "python3", "py"})
_CODE_SUFFIXES = (
    ".py",
    ".pyi",
    ".js",
    ".jsx",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".mts",
    ".cts",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".swift",
    ".php",
    ".scala",
)
_QUOTES = "\"'`"


def _in_string_or_comment(text: str, position: int) -> bool:
    """Whether ``position`` of a code line lies in a string literal or a trailing comment."""
    quote: str | None = None
    index = 0
    while index < position:
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in _QUOTES:
            quote = char
        elif char == "#" or text.startswith("//", index):
            return True
        index += 1
    return quote is not None


def inline_pins(lines: Lines, focus: Collection[int], path: str) -> list[Dep]:
    """``name==X.Y`` PyPI pins on the focus lines of any text file."""
    code = path.endswith(_CODE_SUFFIXES)
    deps: list[Dep] = []
    for number, text in iter_focus(lines, focus):
        if "==" not in text:
            continue
        for match in _INLINE.finditer(text):
            name, raw = match.group(1), match.group(2).rstrip(".-_+")
            if name.lower() in _NOT_PACKAGES:
                continue
            if code and not _in_string_or_comment(text, match.start()):
                continue
            try:
                version = str(Version(raw))
            except InvalidVersion:
                continue
            deps.append(Dep(PYPI, canonicalize_name(name), version, line=number))
    return deps


# ---- guideline-mapped pins -----------------------------------------------------------------


@dataclass(frozen=True)
class MappedPin:
    """The value a mapping reads at one side, and the line that holds it (head only)."""

    value: str | None
    line: int | None


def parse_target(package: str) -> tuple[str, str] | None:
    """``pypi:openhands-agent-server`` → ("pypi", canonical name)."""
    ecosystem, _, name = package.partition(":")
    ecosystem = ecosystem.strip().lower()
    name = name.strip()
    if ecosystem not in (PYPI, NPM) or not name:
        return None
    return ecosystem, canonicalize_name(name) if ecosystem == PYPI else name


def pinned_dep(ecosystem: str, name: str, value: str, mapping: PinMapping) -> Dep:
    """The pinned version as a Dep; a value that is no exact version cannot be dated."""
    text = value.strip()
    version: str | None
    if ecosystem == PYPI:
        try:
            version = str(Version(text))
        except InvalidVersion:
            version = None
    else:
        version = npm_exact(text)
    if version is None:
        reason = f"the value of {mapping.key} in {mapping.file} is not an exact version"
        return Dep(ecosystem, name, text, source=reason)
    return Dep(ecosystem, name, version)


def _parse_document(path: str, text: str) -> object:
    """JSON, YAML or TOML by suffix; anything else is tried as JSON, then YAML."""
    if path.endswith(".toml"):
        return tomllib.loads(text)
    if path.endswith(".json"):
        return json.loads(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return yaml.safe_load(text)


def read_value(path: str, text: str, key: str) -> str | None:
    """The scalar at dotted ``key`` (list indices as numbers), as text; None if absent.

    YAML and TOML read ``1.10`` as the number 1.1: a number is taken as written on its line.
    """
    try:
        node = _parse_document(path, text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError, RecursionError):
        return None
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, str):
        return node
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    lines = lines_of(text)
    written = next((value for _, value in find_key_lines(lines, lines.keys(), key)), None)
    return written or str(node)


def _key_pattern(part: str) -> re.Pattern[str]:
    """A line that sets ``part``: ``"part": x`` (JSON), ``part: x`` (YAML), ``part = x``."""
    quoted = re.escape(part)
    return re.compile(rf"""^\s*(?:-\s+)?["']?{quoted}["']?\s*[:=]\s*(.*?)\s*,?\s*$""")


def _value_of(rest: str) -> str | None:
    value = rest.split(" #", 1)[0].strip().rstrip(",").strip()
    if not value or value[0] in "{[":
        return None
    return value.strip("\"'")


def find_key_lines(lines: Lines, focus: Collection[int], key: str) -> Iterator[tuple[int, str]]:
    """Focus lines setting the last part of ``key`` under its parents (as far as known)."""
    parts = key.split(".")
    pattern = _key_pattern(parts[-1])
    for number, text in iter_focus(lines, focus):
        match = pattern.match(text)
        if not match:
            continue
        value = _value_of(match.group(1))
        if value is None or not _parents_match(lines, number, parts[:-1]):
            continue
        yield number, value


def _parents_match(lines: Lines, number: int, parents: list[str]) -> bool:
    """Whether the keys enclosing ``number`` end with ``parents`` (unknown counts as yes)."""
    current, text = number, lines[number]
    for parent in reversed(parents):
        above = _toml_table(lines, current) if indent_of(text) == 0 else None
        if above is None:
            above = enclosing(lines, current, indent_of(text))
        if above is None:
            return True  # cannot see further: best effort
        text = lines[above]
        header = text.strip()
        if header.startswith("[") and header.endswith("]"):
            # A TOML table header names the remaining parents at once.
            names = [p.strip().strip("\"'") for p in header.strip("[] ").split(".")]
            wanted = parents[: parents.index(parent) + 1]
            return names[-len(wanted) :] == wanted
        if not re.match(rf"""^\s*(?:-\s+)?["']?{re.escape(parent)}["']?\s*:""", text):
            return False
        current = above
    return True


def _toml_table(lines: Lines, number: int) -> int | None:
    """The nearest ``[table]`` header above an unindented TOML line, if the lines show one."""
    current = number - 1
    while (text := lines.get(current)) is not None:
        stripped = text.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            return current
        if stripped.endswith(("{", ":")):
            return None  # JSON or YAML: their nesting is by indentation
        current -= 1
    return None


def mapped_pins(changed: ChangedFile, mapping: PinMapping) -> tuple[list[Dep], list[str]]:
    """The mapped pin when its value is new at head, or a note when the mapping is unusable."""
    target = parse_target(mapping.package)
    if target is None:
        note = f"pin mapping for {mapping.file}: {mapping.package!r} is not 'pypi:…' or 'npm:…'"
        return [], [note]
    ecosystem, name = target
    if changed.head_text is None or changed.head_is_partial:
        # Only the diff: values on added lines that the removed lines did not have.
        removed = {v for _, v in find_key_lines(changed.removed, changed.removed, mapping.key)}
        return [
            pinned_dep(ecosystem, name, value, mapping).at(number)
            for number, value in find_key_lines(changed.visible, changed.added, mapping.key)
            if value not in removed
        ], []
    head_value = read_value(changed.path, changed.head_text, mapping.key)
    if head_value is None:
        return [], []
    head_lines = lines_of(changed.head_text)
    on_added = list(find_key_lines(head_lines, changed.added, mapping.key))
    if changed.base_text is not None:
        if read_value(changed.base_path, changed.base_text, mapping.key) == head_value:
            return [], []
    elif changed.status is not FileStatus.ADDED and head_value not in {v for _, v in on_added}:
        return [], []  # no base to compare with, and the value's line is unchanged
    lines = [number for number, value in on_added if value == head_value]
    return [pinned_dep(ecosystem, name, head_value, mapping).at(lines[0] if lines else None)], []
