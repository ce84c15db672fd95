"""Turn skill files into the guidelines a review applies and the settings it runs with.

Where guidelines come from
--------------------------
A repository keeps skills in ``.agents/skills/`` and, in older setups, ``.openhands/skills/``
and ``.openhands/microagents/``. A skill is ``NAME.md`` directly in one of those folders or a
folder ``NAME/SKILL.md``. When several files share a NAME the first wins: folders in the order
of ``GUIDELINE_DIRS``, and within a folder ``NAME/SKILL.md`` before ``NAME.md``. A skill starts
with YAML frontmatter (``name``, ``description``, ``triggers``) and applies to reviews when one
of its triggers contains ``/codereview`` as a word (``is_review_trigger``). The bot's own
skills (this project's ``skills/`` folder, one per rule) always apply, with source "builtin".

An optional ``reviewbot:`` frontmatter key, in any skill, carries settings: rule severities,
dependency freshness, ignored paths, tests, and the review event policy. Within one branch the
strictest value wins across files; list settings collect the entries of every file.

Security model
--------------
The head branch of a pull request is written by its author and contains the very files that
configure its review, so a PR must not be able to talk the bot out of reviewing it:

1. **Stricter at once, laxer only after merge.** Every setting is ordered from lax to strict
   (a rule ``off`` < suggestion < important < critical; a lower ``min_age_days``; one more
   exemption or ignored path; ``include_tests: false``; ``approve: true``;
   ``request_changes: false``; one pin fewer). The review uses, setting by setting, the
   stricter of the base branch's and the head branch's value. So a PR can raise a severity,
   add a pin or drop an exemption and see it applied to its own review, while a PR that
   turns a rule off, adds an ignored path or removes a base setting gets the base value and a
   note naming the setting and the file. Once a maintainer merges it, the relaxation is on
   the base branch and applies to later PRs.
2. **A guideline that applies at base keeps applying.** If the PR deletes it, breaks it or
   drops its ``/codereview`` trigger, the base version is used (source "base") and a note says
   so. A guideline the PR adds or edits applies from head: its text can only add review
   advice, while its settings still go through rule 1.
3. **Untrusted text is bounded and parsed safely.** At most ``MAX_SKILL_FILES`` skills per
   branch, ``MAX_SKILL_BYTES`` per file and ``MAX_FRONTMATTER_BYTES`` of frontmatter;
   YAML's safe loader constructs no objects, and an alias bomb stays small because aliases
   share one object and the frontmatter is size-bounded. Notes never print a parsed value
   whole (a bomb is only huge once printed): short scalars are shown truncated, anything else
   by type. Every problem becomes a note; nothing here raises on bad input.

A rule's severity when no file sets it is the check's own default, which the caller may pass
(``rule_defaults``). For a rule without one the default is unknown, so it is read the safe way
round each time: a severity the PR alone sets counts as a raise only if it is critical (it
cannot be below the default), and a severity the PR removes counts as a lowering unless it was
``suggestion`` or ``off`` (the default cannot be below it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from reviewbot.models import Guideline, PinMapping, ReviewConfig, Severity
from reviewbot.render import PROJECT_ROOT, inline_code

GUIDELINE_DIRS: tuple[str, ...] = (".agents/skills", ".openhands/skills", ".openhands/microagents")
BUILTIN_DIR = "skills"
BUILTIN_SKILLS_DIR = PROJECT_ROOT / BUILTIN_DIR

MAX_SKILL_FILES = 100
MAX_SKILL_BYTES = 256 * 1024
MAX_FRONTMATTER_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 1024
# A review body is capped at 65,536 characters by GitHub; notes must not crowd it out.
MAX_NOTES = 30
# timedelta overflows near a million million days; ten years is already "never fresh".
MAX_AGE_DAYS = 3650.0
MAX_ENTRY_CHARS = 300

_SKILL_FILE = "SKILL.md"
# The safe loader (what yaml.safe_load uses) on libyaml when it is built in: the same
# constructor, several times faster on 100 files of 64 KiB, and libyaml refuses nesting deeper
# than 1000 levels where the pure-Python parser recurses until RecursionError.
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
_REVIEW_TRIGGER = re.compile(r"/codereview", re.IGNORECASE | re.ASCII)
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")

RuleLevel = Severity | Literal["off"]
Scalar = float | bool | Severity | Literal["off"]
Entry = str | PinMapping

# Scalar settings by dotted name under ``reviewbot:``; rule severities are "rules.<id>".
_MIN_AGE = "freshness.min_age_days"
_INCLUDE_TESTS = "include_tests"
_APPROVE = "review.approve"
_REQUEST_CHANGES = "review.request_changes"
_RULES = "rules."
# List settings: for the first two an extra entry relaxes; for pins a missing entry does.
_EXEMPT = "freshness.exempt"
_IGNORE_PATHS = "ignore_paths"
_PINS = "freshness.pins"

_DEFAULTS = ReviewConfig()
_SCALAR_DEFAULTS: dict[str, Scalar] = {
    _MIN_AGE: _DEFAULTS.min_age_days,
    _INCLUDE_TESTS: _DEFAULTS.include_tests,
    _APPROVE: _DEFAULTS.approve,
    _REQUEST_CHANGES: _DEFAULTS.request_changes,
}
_LEVEL: dict[RuleLevel, int] = {
    "off": 0,
    Severity.SUGGESTION: 1,
    Severity.IMPORTANT: 2,
    Severity.CRITICAL: 3,
}


@dataclass(frozen=True)
class GuidelineSet:
    """What a review applies: guidelines, the effective settings, and what went wrong."""

    guidelines: tuple[Guideline, ...] = ()
    config: ReviewConfig = field(default_factory=ReviewConfig)
    notes: tuple[str, ...] = ()


# ---- paths and triggers ----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Location:
    dir_index: int
    name: str
    layout: int  # 0 for NAME/SKILL.md, 1 for NAME.md: the folder form wins a tie
    path: str


def _locate(path: str, dirs: tuple[str, ...]) -> _Location | None:
    for dir_index, directory in enumerate(dirs):
        prefix = directory + "/"
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == _SKILL_FILE:
            name, layout = parts[0], 0
        elif len(parts) == 1 and parts[0].endswith(".md") and parts[0].lower() != "readme.md":
            # A README documents the folder; OpenHands skips it too.
            name, layout = parts[0][:-3], 1
        else:
            return None
        if not name or name in {".", ".."}:
            return None
        return _Location(dir_index, name, layout, path)
    return None


def is_guideline_path(path: str) -> bool:
    """Whether a repository path is a skill file worth fetching (NAME.md or NAME/SKILL.md)."""
    return _locate(path, GUIDELINE_DIRS) is not None


def is_review_trigger(trigger: str) -> bool:
    """Whether a trigger asks for reviews: ``/codereview`` as a whole word, any case.

    "run /CodeReview now" and "/codereview-strict" count; "/codereviews" and "x/codereview"
    do not, since a letter or digit on either side makes it part of another word.
    """
    for match in _REVIEW_TRIGGER.finditer(trigger):
        start, end = match.span()
        before_ok = start == 0 or not trigger[start - 1].isalnum()
        after_ok = end == len(trigger) or not trigger[end].isalnum()
        if before_ok and after_ok:
            return True
    return False


# ---- showing untrusted values ----------------------------------------------------------


def _code(text: str) -> str:
    if len(text) > 80:
        text = text[:77] + "..."
    return inline_code(text)


def _show(value: object) -> str:
    """A short rendering of a parsed value that cannot blow up on an alias bomb."""
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, Severity):
        return _code(value.value)
    if isinstance(value, str | int | float):
        return _code(str(value))
    if isinstance(value, PinMapping):
        return _code(f"{value.file}:{value.key} -> {value.package}")
    if value is None:
        return _code("null")
    return f"a {type(value).__name__}"


def _plain(value: Scalar) -> str:
    """A setting's value as it would be written in YAML (values here are already validated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Severity):
        return value.value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _paths(paths: Iterable[str]) -> str:
    return ", ".join(_code(path) for path in dict.fromkeys(paths))


# ---- one skill file --------------------------------------------------------------------


class _Broken(ValueError):
    """A skill file that cannot be used; the message says why, for the review's notes."""


@dataclass(frozen=True)
class _FileSettings:
    """What one file's ``reviewbot:`` block sets (only what it sets, nothing defaulted)."""

    path: str
    scalars: Mapping[str, Scalar]
    lists: Mapping[str, tuple[Entry, ...]]


@dataclass(frozen=True)
class _Skill:
    location: _Location
    name: str
    description: str
    body: str
    triggers: tuple[str, ...]
    settings: _FileSettings | None

    @property
    def applies(self) -> bool:
        return any(is_review_trigger(trigger) for trigger in self.triggers)

    def guideline(self, source: Literal["head", "base", "builtin"]) -> Guideline:
        return Guideline(self.name, self.location.path, source, self.description, self.body)


def _split_frontmatter(text: str) -> tuple[str | None, str]:
    """(frontmatter, body); frontmatter is None when the file does not open with ``---``."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[0].rstrip() != "---":
        return None, text.removeprefix("\ufeff")
    for index in range(1, len(lines)):
        if lines[index].rstrip() in {"---", "..."}:
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
    raise _Broken("its frontmatter opens with `---` but never closes")


def _load_frontmatter(text: str) -> dict[object, object]:
    if len(text.encode("utf-8", "replace")) > MAX_FRONTMATTER_BYTES:
        raise _Broken(f"its frontmatter is larger than {MAX_FRONTMATTER_BYTES // 1024} KiB")
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # safe: see _SAFE_LOADER
    except yaml.MarkedYAMLError as error:
        where = f" at line {error.problem_mark.line + 2}" if error.problem_mark else ""
        problem = (error.problem or "")[:200]
        raise _Broken(f"its frontmatter is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError:
        raise _Broken("its frontmatter is not valid YAML") from None
    except ValueError as error:  # e.g. a date such as 2024-02-30
        raise _Broken(f"its frontmatter has an invalid value: {str(error)[:200]}") from None
    except RecursionError:
        raise _Broken("its frontmatter is nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _Broken(f"its frontmatter is {_show(data)}, not a mapping")
    return data


def _text_field(data: Mapping[object, object], key: str, path: str, notes: list[str]) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        notes.append(f"Guideline {_code(path)}: `{key}` should be text, not {_show(value)}.")
        return ""
    return value.strip()


def _triggers(value: object, path: str, notes: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # a lone trigger written without list brackets
        return (value,)
    if not isinstance(value, list):
        notes.append(f"Guideline {_code(path)}: `triggers` should be a list, not {_show(value)}.")
        return ()
    texts = tuple(item for item in value if isinstance(item, str))
    if len(texts) < len(value):
        notes.append(
            f"Guideline {_code(path)}: ignored {len(value) - len(texts)} trigger(s) that are "
            "not text."
        )
    return texts


def _parse_skill(
    location: _Location, text: str, notes: list[str], settings: _SettingsParser | None
) -> _Skill:
    """Parse one skill file; raises ``_Broken`` when it cannot be used at all."""
    if len(text.encode("utf-8", "replace")) > MAX_SKILL_BYTES:
        raise _Broken(f"it is larger than {MAX_SKILL_BYTES // 1024} KiB")
    frontmatter, body = _split_frontmatter(text)
    # No frontmatter is a plain knowledge file: valid, but it has no triggers and no settings.
    data = {} if frontmatter is None else _load_frontmatter(frontmatter)
    path = location.path
    description = _text_field(data, "description", path, notes)
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[: MAX_DESCRIPTION_CHARS - 3] + "..."
    parsed = None
    if settings is not None and "reviewbot" in data:
        parsed = settings.parse(data["reviewbot"], path, notes)
    return _Skill(
        location=location,
        name=_text_field(data, "name", path, notes)[:100] or location.name,
        description=description,
        body=body.strip(),
        triggers=_triggers(data.get("triggers"), path, notes),
        settings=parsed,
    )


# ---- the reviewbot: settings block ------------------------------------------------------


@dataclass
class _SettingsParser:
    """Validate one ``reviewbot:`` block; anything invalid becomes a note and is dropped."""

    known_rules: Collection[str] | None

    def parse(self, raw: object, path: str, notes: list[str]) -> _FileSettings:
        scalars: dict[str, Scalar] = {}
        lists: dict[str, tuple[Entry, ...]] = {}

        def bad(setting: str, why: str) -> None:
            notes.append(f"Guideline {_code(path)}: ignored {_code('reviewbot' + setting)}: {why}.")

        for key, value in self._mapping(raw, "", bad).items():
            if key == "rules":
                for rule, level in self._mapping(value, ".rules", bad).items():
                    self._rule(rule, level, scalars, bad)
            elif key == "freshness":
                for sub, item in self._mapping(value, ".freshness", bad).items():
                    if sub == "min_age_days":
                        self._age(item, scalars, bad)
                    elif sub == "exempt":
                        lists[_EXEMPT] = self._globs(item, ".freshness.exempt", bad)
                    elif sub == "pins":
                        lists[_PINS] = self._pins(item, bad)
                    else:
                        bad(f".freshness.{sub}", "unknown setting")
            elif key == "ignore_paths":
                lists[_IGNORE_PATHS] = self._globs(value, ".ignore_paths", bad)
            elif key == "include_tests":
                self._bool(_INCLUDE_TESTS, value, scalars, bad)
            elif key == "review":
                for sub, item in self._mapping(value, ".review", bad).items():
                    if sub in {"approve", "request_changes"}:
                        self._bool(f"review.{sub}", item, scalars, bad)
                    else:
                        bad(f".review.{sub}", "unknown setting")
            else:
                bad(f".{key}", "unknown setting")
        return _FileSettings(path, scalars, lists)

    @staticmethod
    def _mapping(value: object, where: str, bad: Callable[[str, str], None]) -> dict[str, object]:
        if not isinstance(value, dict):
            bad(where, f"it should be a mapping, not {_show(value)}")
            return {}
        keys = {key: item for key, item in value.items() if isinstance(key, str)}
        if len(keys) < len(value):
            bad(where, "keys must be text")
        return keys

    def _rule(
        self, rule: str, value: object, scalars: dict[str, Scalar], bad: Callable[[str, str], None]
    ) -> None:
        where = f".rules.{rule}"
        rule = rule.strip().lower()
        if not _RULE_ID.fullmatch(rule):
            bad(where, "not a rule id")
            return
        if self.known_rules is not None and rule not in self.known_rules:
            bad(where, "no such rule")
            return
        # YAML 1.1 reads a bare `off` (and `no`, `false`) as false.
        level = (
            "off" if value is False else value.strip().lower() if isinstance(value, str) else None
        )
        if level == "off":
            scalars[_RULES + rule] = "off"
        elif level in {severity.value for severity in Severity}:
            scalars[_RULES + rule] = Severity(level)
        else:
            bad(where, f"{_show(value)} is not `off`, `suggestion`, `important` or `critical`")

    @staticmethod
    def _age(value: object, scalars: dict[str, Scalar], bad: Callable[[str, str], None]) -> None:
        # The range test also turns away NaN and infinity; a bool is an int to Python, not here.
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_AGE_DAYS
        ):
            scalars[_MIN_AGE] = float(value)
            return
        bad(
            ".freshness.min_age_days",
            f"{_show(value)} is not a number of days from 0 to {MAX_AGE_DAYS:g}",
        )

    @staticmethod
    def _bool(
        name: str, value: object, scalars: dict[str, Scalar], bad: Callable[[str, str], None]
    ) -> None:
        if isinstance(value, bool):
            scalars[name] = value
        else:
            bad(f".{name}", f"{_show(value)} is not true or false")

    @staticmethod
    def _globs(value: object, where: str, bad: Callable[[str, str], None]) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            bad(where, f"it should be a list of globs, not {_show(value)}")
            return ()
        globs: list[str] = []
        for item in items:
            if isinstance(item, str) and item.strip() and len(item) <= MAX_ENTRY_CHARS:
                globs.append(item.strip())
            else:
                bad(where, f"entry {_show(item)} is not a glob")
        return tuple(dict.fromkeys(globs))

    @staticmethod
    def _pins(value: object, bad: Callable[[str, str], None]) -> tuple[PinMapping, ...]:
        where = ".freshness.pins"
        if not isinstance(value, list):
            bad(where, f"it should be a list, not {_show(value)}")
            return ()
        pins: list[PinMapping] = []
        for item in value:
            fields = item if isinstance(item, dict) else {}
            file, key, package = (fields.get(name) for name in ("file", "key", "package"))
            if (
                set(fields) == {"file", "key", "package"}
                and isinstance(file, str)
                and isinstance(key, str)
                and isinstance(package, str)
                and _safe_repo_path(file)
                and key.strip()
                and _package_ref(package)
                and max(len(file), len(key), len(package)) <= MAX_ENTRY_CHARS
            ):
                pins.append(PinMapping(file=file, key=key.strip(), package=package.strip()))
            else:
                bad(
                    where,
                    f"entry {_show(item)} needs exactly `file` (a repository path), "
                    "`key` and `package` (`ecosystem:name`)",
                )
        return tuple(dict.fromkeys(pins))


def _safe_repo_path(path: str) -> bool:
    """A relative path that stays inside the repository (pins name files to read)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts


def _package_ref(package: str) -> bool:
    ecosystem, colon, name = package.strip().partition(":")
    return bool(colon and ecosystem.strip() and name.strip())


# ---- merging settings: within a branch, then base against head ------------------------


@dataclass
class _Vote:
    value: Scalar
    paths: list[str]


@dataclass
class _Branch:
    """One branch's settings: the strictest value of each scalar, every list entry."""

    scalars: dict[str, _Vote] = field(default_factory=dict)
    lists: dict[str, dict[Entry, list[str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Strictness:
    rule_defaults: Mapping[str, Severity]

    def __call__(self, name: str, value: Scalar | None, *, unknown: Severity) -> float:
        """Higher is stricter; ``None`` (not set) stands for the default value.

        ``unknown`` is what an unset rule without a known default counts as: the caller picks
        the end of the range that makes a relaxation visible (see the module docstring).
        """
        if name.startswith(_RULES):
            if value is None:
                value = self.rule_defaults.get(name[len(_RULES) :], unknown)
            return float(_LEVEL[value] if isinstance(value, Severity) else _LEVEL["off"])
        current = _SCALAR_DEFAULTS[name] if value is None else value
        if name == _MIN_AGE and isinstance(current, int | float):
            return float(current)
        # approve: true is the lax value; include_tests and request_changes: true are strict.
        return float(bool(current) != (name == _APPROVE))

    def merge(self, files: Iterable[_FileSettings]) -> _Branch:
        branch = _Branch()
        for settings in files:
            for name, value in settings.scalars.items():
                vote = branch.scalars.get(name)
                if vote is None:
                    branch.scalars[name] = _Vote(value, [settings.path])
                elif vote.value == value:
                    vote.paths.append(settings.path)
                # Both values are set here, so ``unknown`` plays no part.
                elif self(name, value, unknown=Severity.CRITICAL) > self(
                    name, vote.value, unknown=Severity.CRITICAL
                ):
                    branch.scalars[name] = _Vote(value, [settings.path])
            for name, entries in settings.lists.items():
                for entry in entries:
                    branch.lists.setdefault(name, {}).setdefault(entry, []).append(settings.path)
        return branch


def _combine_scalars(
    base: _Branch, head: _Branch, strictness: _Strictness, notes: list[str]
) -> dict[str, Scalar]:
    """Setting by setting, the stricter of base and head; a note for each laxer head value."""
    scalars: dict[str, Scalar] = {}
    for name in sorted(set(base.scalars) | set(head.scalars)):
        at_base, at_head = base.scalars.get(name), head.scalars.get(name)
        base_value = at_base.value if at_base else None
        head_value = at_head.value if at_head else None
        # The head's unset rule is as lax as it could be, the base's as strict as it could be.
        head_level = strictness(name, head_value, unknown=Severity.SUGGESTION)
        if head_level >= strictness(name, base_value, unknown=Severity.CRITICAL):
            if head_value is not None:
                scalars[name] = head_value
            continue
        if base_value is not None:
            scalars[name] = base_value
        if at_head is not None:
            notes.append(
                f"Ignored `reviewbot.{name}: {_plain(at_head.value)}` from "
                f"{_paths(at_head.paths)}: it relaxes the review, so it takes effect only once "
                "the base branch has it."
            )
        elif at_base is not None:
            notes.append(
                f"Kept `reviewbot.{name}: {_plain(at_base.value)}` from the base branch "
                f"({_paths(at_base.paths)}): this pull request removes it, which relaxes the "
                "review and takes effect only once merged."
            )
    return scalars


def _combine_lists(base: _Branch, head: _Branch, notes: list[str]) -> dict[str, tuple[Entry, ...]]:
    """Exemptions and ignored paths: only entries base has too. Pins: base's and head's."""
    lists: dict[str, tuple[Entry, ...]] = {}
    for name in (_EXEMPT, _IGNORE_PATHS):
        at_base, at_head = base.lists.get(name, {}), head.lists.get(name, {})
        lists[name] = tuple(entry for entry in at_head if entry in at_base)
        for entry, paths in at_head.items():
            if entry not in at_base:
                notes.append(
                    f"Ignored `reviewbot.{name}` entry {_show(entry)} from {_paths(paths)}: it "
                    "relaxes the review, so it takes effect only once the base branch has it."
                )
    base_pins, head_pins = base.lists.get(_PINS, {}), head.lists.get(_PINS, {})
    lists[_PINS] = tuple(dict.fromkeys([*head_pins, *base_pins]))
    for entry, paths in base_pins.items():
        if entry not in head_pins:
            notes.append(
                f"Kept `reviewbot.{_PINS}` entry {_show(entry)} from the base branch "
                f"({_paths(paths)}): this pull request removes it, which relaxes the review "
                "and takes effect only once merged."
            )
    return lists


def _config(scalars: Mapping[str, Scalar], lists: Mapping[str, tuple[Entry, ...]]) -> ReviewConfig:
    def flag(name: str) -> bool:
        return bool(scalars.get(name, _SCALAR_DEFAULTS[name]))

    rule_severity: dict[str, RuleLevel] = {}
    for name, value in scalars.items():
        if name.startswith(_RULES) and isinstance(value, Severity):
            rule_severity[name[len(_RULES) :]] = value
        elif name.startswith(_RULES) and value == "off":
            rule_severity[name[len(_RULES) :]] = "off"
    age = scalars.get(_MIN_AGE, _DEFAULTS.min_age_days)
    return ReviewConfig(
        rule_severity=rule_severity,
        min_age_days=float(age) if isinstance(age, int | float) else _DEFAULTS.min_age_days,
        exempt=tuple(entry for entry in lists.get(_EXEMPT, ()) if isinstance(entry, str)),
        pins=tuple(entry for entry in lists.get(_PINS, ()) if isinstance(entry, PinMapping)),
        ignore_paths=tuple(e for e in lists.get(_IGNORE_PATHS, ()) if isinstance(e, str)),
        include_tests=flag(_INCLUDE_TESTS),
        approve=flag(_APPROVE),
        request_changes=flag(_REQUEST_CHANGES),
    )


# ---- putting it together ---------------------------------------------------------------

_Loaded = dict[str, _Skill | None]  # skill NAME -> the winning file, None when it is broken


def _load_branch(
    files: Mapping[str, str],
    dirs: tuple[str, ...],
    notes: list[str],
    settings: _SettingsParser | None,
) -> _Loaded:
    locations = sorted(location for path in files if (location := _locate(path, dirs)) is not None)
    winners: dict[str, _Location] = {}
    for location in locations:
        winners.setdefault(location.name, location)  # first name wins
    chosen = list(winners.values())
    if len(chosen) > MAX_SKILL_FILES:
        skipped = chosen[MAX_SKILL_FILES:]
        chosen = chosen[:MAX_SKILL_FILES]
        notes.append(
            f"Only the first {MAX_SKILL_FILES} guideline files were read; {len(skipped)} more "
            f"(from {_code(skipped[0].path)} on) were skipped."
        )
    loaded: _Loaded = {}
    for location in chosen:
        try:
            loaded[location.name] = _parse_skill(location, files[location.path], notes, settings)
        except _Broken as problem:
            notes.append(f"Guideline {_code(location.path)} is skipped: {problem}.")
            loaded[location.name] = None
    return loaded


def _apply(head: _Loaded, base: _Loaded, notes: list[str]) -> list[Guideline]:
    applied: list[Guideline] = []
    for name in sorted(set(head) | set(base)):
        at_head, at_base = head.get(name), base.get(name)
        if at_head is not None and at_head.applies:
            applied.append(at_head.guideline("head"))
        elif at_base is not None and at_base.applies:
            applied.append(at_base.guideline("base"))
            if name not in head:
                change = "deletes it"
            elif at_head is None:
                change = "breaks it"
            else:
                change = "removes its `/codereview` trigger"
            notes.append(
                f"Guideline {_code(name)}: this pull request {change}; the base branch's "
                f"version ({_code(at_base.location.path)}) still applies until that is merged."
            )
    return applied


def _settings(loaded: _Loaded) -> list[_FileSettings]:
    return [skill.settings for skill in loaded.values() if skill and skill.settings]


def load_guidelines(
    head: Mapping[str, str],
    base: Mapping[str, str],
    builtin: Mapping[str, str],
    *,
    known_rules: Collection[str] | None = None,
    rule_defaults: Mapping[str, Severity] | None = None,
) -> GuidelineSet:
    """Guidelines and settings for one review, from {repo-relative path: text} of each branch.

    ``head``/``base`` may hold any paths; only guideline paths are read. ``builtin`` is this
    project's ``skills/`` ({"skills/NAME.md": text}); those always apply and their own
    ``reviewbot:`` keys are not read (defaults live in ``ReviewConfig``). ``known_rules``,
    when given, turns settings for other rule ids into notes. ``rule_defaults`` gives the
    severity a rule has when nothing sets it (see the module docstring for why it matters).
    Notes come from the head and built-in files only: the base's own problems are not this
    pull request's doing, and when the head still has them they are reported from there.
    """
    problems: list[str] = []  # files that could not be read as written
    overrides: list[str] = []  # what the PR asked for and did not get: shown first
    parser = _SettingsParser(known_rules)
    builtins = _load_branch(builtin, (BUILTIN_DIR,), problems, settings=None)
    at_head = _load_branch(head, GUIDELINE_DIRS, problems, parser)
    at_base = _load_branch(base, GUIDELINE_DIRS, [], parser)

    guidelines = [skill.guideline("builtin") for _, skill in sorted(builtins.items()) if skill]
    guidelines += _apply(at_head, at_base, overrides)

    strictness = _Strictness(rule_defaults or {})
    base_settings = strictness.merge(_settings(at_base))
    head_settings = strictness.merge(_settings(at_head))
    config = _config(
        _combine_scalars(base_settings, head_settings, strictness, overrides),
        _combine_lists(base_settings, head_settings, overrides),
    )
    unique = list(dict.fromkeys([*overrides, *problems]))
    if len(unique) > MAX_NOTES:
        unique = [
            *unique[: MAX_NOTES - 1],
            f"…and {len(unique) - MAX_NOTES + 1} more guideline notes.",
        ]
    return GuidelineSet(tuple(guidelines), config, tuple(unique))


def builtin_skill_texts(directory: Path = BUILTIN_SKILLS_DIR) -> dict[str, str]:
    """Read the bot's own skills from disk, keyed like ``load_guidelines`` expects them.

    The only file-system read in this module, and of the bot's own shipped files: a missing or
    unreadable one is a packaging error and is allowed to fail loudly.
    """
    texts: dict[str, str] = {}
    for file in sorted([*directory.glob("*.md"), *directory.glob(f"*/{_SKILL_FILE}")]):
        relative = file.relative_to(directory).as_posix()
        key = f"{BUILTIN_DIR}/{relative}"
        if _locate(key, (BUILTIN_DIR,)) is not None and file.is_file():
            texts[key] = file.read_text(encoding="utf-8")
    return texts


__all__ = [
    "BUILTIN_SKILLS_DIR",
    "GUIDELINE_DIRS",
    "MAX_FRONTMATTER_BYTES",
    "MAX_SKILL_BYTES",
    "MAX_SKILL_FILES",
    "GuidelineSet",
    "builtin_skill_texts",
    "is_guideline_path",
    "is_review_trigger",
    "load_guidelines",
]
