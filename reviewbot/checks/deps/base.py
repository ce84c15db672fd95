"""Shared vocabulary of the dependency parsers: a found dependency, a format, line helpers.

Every format answers two questions. ``compare(head, base)``: with both whole files, which
versions does head have that base did not (structured parse, authoritative). ``scan(lines,
focus)``: with only some lines known (a patch, or to locate a version on an added line), which
versions appear on the ``focus`` lines. The first decides *what* is introduced, the second
*where* it is shown; when only the diff is known the second does both, best effort.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

NPM = "npm"
PYPI = "pypi"

Lines = Mapping[int, str]


class ParseError(ValueError):
    """A whole file is not the format its name promises (the check falls back to the diff)."""


@dataclass(frozen=True)
class Dep:
    """One dependency occurrence: a registry version, or a source the registry cannot date.

    ``version`` is the exact version for registry packages; for other sources it is the
    spec as written (a git URL, a tarball, a path) and ``source`` says why it cannot be dated
    ("installed from a git repository").
    """

    ecosystem: str
    name: str
    version: str
    line: int | None = None
    source: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ecosystem, self.name, self.version)

    def at(self, line: int | None) -> Dep:
        return Dep(self.ecosystem, self.name, self.version, line, self.source)


@dataclass
class Scan:
    """What a line scan found on the focus lines, and how many it could not attribute."""

    deps: list[Dep] = field(default_factory=list)
    # Named, but whether they are dependencies at all (which section) could not be told.
    uncertain: list[Dep] = field(default_factory=list)
    # Version lines whose package could not be told from the lines at hand.
    unresolved: int = 0


class Format(Protocol):
    """One manifest or lockfile format."""

    label: str

    def matches(self, path: str) -> bool: ...

    def compare(self, head: str, base: str | None) -> list[Dep]:
        """Dependencies at head whose (name, version) base did not have. Raises ParseError."""
        ...

    def scan(self, lines: Lines, focus: Collection[int]) -> Scan:
        """Dependencies whose version appears on one of ``focus`` (best effort)."""
        ...


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def lines_of(text: str) -> dict[int, str]:
    """1-based line numbers to text, like ChangedFile.added."""
    return dict(enumerate(text.splitlines(), 1))


def indent_of(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


def enclosing(lines: Lines, number: int, indent: int, limit: int = 2000) -> int | None:
    """The nearest line above ``number`` indented less than ``indent``.

    ``None`` when a line that is not known (a gap in a patch) comes first: the enclosing
    key cannot be told, and callers say so rather than guess.
    """
    current = number - 1
    while current >= 1 and number - current <= limit:
        text = lines.get(current)
        if text is None:
            return None
        stripped = text.strip()
        if stripped and not stripped.startswith(("#", "//")) and indent_of(text) < indent:
            return current
        current -= 1
    return None


def added_diff(head: list[Dep], base_keys: Collection[tuple[str, str, str]]) -> list[Dep]:
    return [dep for dep in head if dep.key not in base_keys]


# ---- npm names and versions --------------------------------------------------------------

# npm's own rule (validate-npm-package-name), loosened for old mixed-case names.
NPM_NAME = re.compile(r"^(?:@[A-Za-z0-9][\w.~-]*/)?[A-Za-z0-9_~][\w.~-]*$")
_SEMVER = re.compile(
    r"^v?(?P<version>(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$"
)
# Sources npm, yarn and pnpm fetch from somewhere other than the registry.
_REMOTE_PREFIXES = (
    "git+",
    "git:",
    "git@",
    "ssh:",
    "http:",
    "https:",
    "github:",
    "gitlab:",
    "bitbucket:",
    "gist:",
)
_GITHUB_SHORTHAND = re.compile(r"^[\w.-]+/[\w.-]+(?:#.*)?$")


def npm_exact(spec: str) -> str | None:
    """The version an npm spec pins exactly ("1.2.3", "=1.2.3", "v1.2.3"), else None."""
    value = spec.strip()
    if value.startswith("="):
        value = value[1:].strip()
    match = _SEMVER.match(value)
    return match.group("version") if match else None


def npm_remote(spec: str) -> bool:
    """A git, GitHub or tarball URL spec: installed from outside the registry."""
    value = spec.strip()
    if value.startswith(_REMOTE_PREFIXES):
        return True
    return not value.startswith(("@", ".")) and bool(_GITHUB_SHORTHAND.match(value))


def remote_reason(spec: str) -> str:
    """Why a remote spec cannot be dated: where it is installed from."""
    if spec.strip().startswith(("http:", "https:")) and ".git" not in spec:
        return "installed from a URL outside the registry"
    return "installed from a git repository"


def split_name_at(spec: str) -> tuple[str, str] | None:
    """``name@rest`` → (name, rest), with scoped names (``@scope/x@1``) kept whole."""
    at = spec.find("@", 1)
    if at <= 0:
        return None
    return spec[:at], spec[at + 1 :]


def iter_focus(lines: Lines, focus: Collection[int]) -> Iterator[tuple[int, str]]:
    """Focus lines that are known, in order."""
    for number in sorted(focus):
        text = lines.get(number)
        if text is not None:
            yield number, text


# ---- lockfiles as blocks -------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One package entry of a lockfile: its first line number and its text."""

    start: int
    text: str


class BlockFormat(Protocol):
    """How to cut a lockfile into package entries and read one entry."""

    def blocks(self, text: str) -> list[Block]:
        """Raises ParseError when the file is not laid out as the tool writes it."""
        ...

    def parse_block(self, block: Block) -> list[Dep]:
        """Authoritative parse of one entry (raises ParseError)."""
        ...

    def name_of(self, block: Block) -> str | None:
        """The entry's package name read cheaply, or None to have it parsed."""
        ...


def blockwise(fmt: BlockFormat, head: str, base: str | None) -> list[Dep]:
    """Introduced dependencies, parsing only the entries whose text changed.

    A 50,000-line lockfile takes about a second to load with tomllib or a YAML loader, per
    side; a version bump touches a few entries. Entries whose text is in both files are
    unchanged; only changed head entries and base entries of the same names are parsed, and
    that parse is the real one (tomllib, YAML), so an entry cannot hide behind the cutting.
    A file that cannot be cut cleanly raises ParseError and the caller parses it whole.
    """
    head_blocks = fmt.blocks(head)
    base_blocks = fmt.blocks(base) if base is not None else []
    base_texts = {block.text for block in base_blocks}
    changed = [
        dep
        for block in head_blocks
        if block.text not in base_texts
        for dep in fmt.parse_block(block)
    ]
    if not changed:
        return []
    names = {dep.name for dep in changed}
    base_keys: set[tuple[str, str, str]] = set()
    for block in base_blocks:
        name = fmt.name_of(block)
        if name is None or name in names:
            base_keys.update(dep.key for dep in fmt.parse_block(block))
    return added_diff(changed, base_keys)


def split_blocks(lines: list[str], bounds: list[tuple[int, bool]]) -> list[Block]:
    """Blocks between 0-based boundaries ``(index, is_package)``; trailing blank lines cut.

    Each block runs from its boundary to the next one; only package boundaries make blocks
    (the others, like a section header, just end the previous block).
    """
    blocks: list[Block] = []
    for position, (start, is_package) in enumerate(bounds):
        if not is_package:
            continue
        end = bounds[position + 1][0] if position + 1 < len(bounds) else len(lines)
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        blocks.append(Block(start + 1, "\n".join(lines[start:end])))
    return blocks


def line_in_block(block: Block, pattern: re.Pattern[str]) -> int:
    """The file line number of the first line of ``block`` matching ``pattern`` (else start)."""
    for offset, text in enumerate(block.text.split("\n")):
        if pattern.match(text):
            return block.start + offset
    return block.start


# ---- shared parsing helpers ----------------------------------------------------------------

# libyaml when present: the pure-Python loader is several times slower on big lockfiles.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# npm specs and lockfile entries that point into the repository rather than a download.
NPM_LOCAL_PREFIXES = ("file:", "link:", "portal:")
NPM_SKIP_PREFIXES = ("workspace:", "catalog:")


def load_yaml(text: str) -> object:
    """Safe YAML (no objects constructed); ParseError when it is not YAML."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # CSafeLoader/SafeLoader: no objects
    except yaml.YAMLError as error:
        raise ParseError(f"not valid YAML ({error})") from error


def load_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ParseError(f"not valid TOML ({error})") from error


def json_unquote(raw: str) -> str:
    """The text of a JSON string literal's inside (escapes resolved when valid)."""
    if "\\" not in raw:
        return raw
    try:
        value = json.loads(f'"{raw}"')
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, str) else raw
