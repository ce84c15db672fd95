"""Skill files → applied guidelines and settings, with the base-versus-head security model."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from reviewbot import guidelines
from reviewbot.guidelines import (
    BUILTIN_SKILLS_DIR,
    GUIDELINE_DIRS,
    MAX_FRONTMATTER_BYTES,
    MAX_NOTES,
    MAX_SKILL_BYTES,
    MAX_SKILL_FILES,
    GuidelineSet,
    builtin_skill_texts,
    is_guideline_path,
    is_review_trigger,
    load_guidelines,
)
from reviewbot.models import PinMapping, ReviewConfig, Severity

DEFAULTS = ReviewConfig()
PIN = {"file": "config/defaults.json", "key": "versions.agentServer", "package": "pypi:oh-server"}
PIN_MAPPING = PinMapping("config/defaults.json", "versions.agentServer", "pypi:oh-server")


def skill(
    *,
    name: str | None = "x",
    triggers: Any = ("/codereview",),
    settings: Any = None,
    body: str = "Body text.",
    description: Any = "What it checks.",
) -> str:
    """A skill file; ``None`` leaves a key out."""
    front: dict[str, Any] = {}
    if name is not None:
        front["name"] = name
    if description is not None:
        front["description"] = description
    if triggers is not None:
        front["triggers"] = list(triggers) if isinstance(triggers, tuple) else triggers
    if settings is not None:
        front["reviewbot"] = settings
    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n{body}\n"


def config_only(settings: Any) -> str:
    """A skill that only configures the bot (no trigger): its settings still count."""
    return skill(name="config", triggers=None, settings=settings)


CONFIG = ".agents/skills/config.md"


def load(head: dict[str, str], base: dict[str, str] | None = None, **kwargs: Any) -> GuidelineSet:
    return load_guidelines(head, base or {}, {}, **kwargs)


def names(result: GuidelineSet) -> list[tuple[str, str, str]]:
    return [(g.name, g.path, g.source) for g in result.guidelines]


# ---- triggers and paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        "/codereview",
        "/CodeReview",
        "/CODEREVIEW",
        "run /codereview now",
        "please /CodeReview.",
        "/codereview-strict",
        "/codereview_strict",
        "(/codereview)",
        "//codereview",
        "x /codereviews and /codereview",
        "\t/codereview\n",
    ],
)
def test_review_triggers_match(trigger: str) -> None:
    assert is_review_trigger(trigger)


@pytest.mark.parametrize(
    "trigger",
    [
        "",
        "codereview",
        "/codereviews",
        "/codereview2",
        "x/codereview",
        "9/codereview",
        "é/codereview",
        "/codereviewé",
        "/code review",
        "/code-review",
        "/review",
        "/codereveiw",
        "/coderev",
    ],
)
def test_other_triggers_do_not_match(trigger: str) -> None:
    assert not is_review_trigger(trigger)


@pytest.mark.parametrize("directory", GUIDELINE_DIRS)
@pytest.mark.parametrize("tail", ["style.md", "style/SKILL.md", "a-b.c.md", "SKILL.md"])
def test_guideline_paths(directory: str, tail: str) -> None:
    assert is_guideline_path(f"{directory}/{tail}")


@pytest.mark.parametrize(
    "path",
    [
        ".agents/skills/README.md",
        ".agents/skills/readme.md",
        ".agents/skills/style.txt",
        ".agents/skills/.md",
        ".agents/skills/style/notes.md",
        ".agents/skills/style/skill.md",
        ".agents/skills/a/b/SKILL.md",
        ".agents/skills/a/b.md",
        ".agents/skills//SKILL.md",
        ".agents/skills/../SKILL.md",
        ".agents/skills",
        ".agents/skill/style.md",
        "x/.agents/skills/style.md",
        "skills/style.md",
        ".openhands/microagents/knowledge/x.md",
        ".github/skills/style.md",
    ],
)
def test_not_guideline_paths(path: str) -> None:
    assert not is_guideline_path(path)


# ---- loading ---------------------------------------------------------------------------


@pytest.mark.parametrize("directory", GUIDELINE_DIRS)
def test_both_layouts_load_from_every_directory(directory: str) -> None:
    head = {
        f"{directory}/flat.md": skill(name="Flat one", body="Flat body", description="flat"),
        f"{directory}/folder/SKILL.md": skill(name=None, body="Folder body", description=None),
        f"{directory}/folder/extra.md": "supporting file, not a skill",
        "docs/unrelated.md": skill(name="unrelated"),
    }
    result = load(head)
    assert result.notes == ()
    assert [(g.name, g.path, g.source, g.description, g.body) for g in result.guidelines] == [
        ("Flat one", f"{directory}/flat.md", "head", "flat", "Flat body"),
        ("folder", f"{directory}/folder/SKILL.md", "head", "", "Folder body"),
    ]


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        (".agents/skills/s.md", ".openhands/skills/s.md"),
        (".agents/skills/s.md", ".openhands/microagents/s.md"),
        (".openhands/skills/s.md", ".openhands/microagents/s.md"),
        (".agents/skills/s/SKILL.md", ".openhands/skills/s/SKILL.md"),
        (".agents/skills/s.md", ".openhands/skills/s/SKILL.md"),
        (".openhands/skills/s/SKILL.md", ".openhands/microagents/s.md"),
        (".agents/skills/s/SKILL.md", ".agents/skills/s.md"),
    ],
)
def test_first_name_wins(winner: str, loser: str) -> None:
    # The shadowed file is not read at all: neither its text nor its (stricter) settings.
    files = {
        loser: skill(name="s", body="loser", settings={"freshness": {"min_age_days": 30}}),
        winner: skill(name="s", body="winner"),
    }
    result = load(files)
    assert [(g.path, g.body) for g in result.guidelines] == [(winner, "winner")]
    assert result.config == DEFAULTS
    assert result.notes == ()


def test_only_skills_with_a_review_trigger_apply() -> None:
    head = {
        ".agents/skills/a.md": skill(name="a", triggers=("deploy", "/review")),
        ".agents/skills/b.md": skill(name="b", triggers=None),
        ".agents/skills/c.md": "# plain knowledge file\nno frontmatter at all\n",
        ".agents/skills/d.md": skill(name="d", triggers=("release", "Run /CodeReview please")),
        ".agents/skills/e.md": skill(name="e", triggers=[]),
    }
    result = load(head)
    assert names(result) == [("d", ".agents/skills/d.md", "head")]
    assert result.notes == ()


def test_a_string_trigger_is_a_single_item_list() -> None:
    result = load({".agents/skills/a.md": skill(triggers="/codereview")})
    assert [g.path for g in result.guidelines] == [".agents/skills/a.md"]
    assert result.notes == ()


@pytest.mark.parametrize("triggers", [42, {"on": "/codereview"}, True, 1.5])
def test_triggers_of_another_type_are_a_note(triggers: Any) -> None:
    result = load({".agents/skills/a.md": skill(triggers=triggers)})
    assert result.guidelines == ()
    assert len(result.notes) == 1
    assert "triggers" in result.notes[0] and ".agents/skills/a.md" in result.notes[0]


def test_non_text_triggers_are_dropped_and_the_rest_kept() -> None:
    result = load({".agents/skills/a.md": skill(triggers=[1, ["/codereview"], "/codereview"])})
    assert [g.path for g in result.guidelines] == [".agents/skills/a.md"]
    assert len(result.notes) == 1 and "2 trigger(s)" in result.notes[0]


@pytest.mark.parametrize(("field", "value"), [("name", 3), ("description", ["a"])])
def test_non_text_name_or_description_is_a_note(field: str, value: Any) -> None:
    result = load({".agents/skills/a.md": skill(**{field: value})})
    assert [g.name for g in result.guidelines] == ["a" if field == "name" else "x"]
    assert len(result.notes) == 1 and f"`{field}`" in result.notes[0]


BROKEN = {
    "unclosed frontmatter": "---\nname: a\ntriggers: [/codereview]\nbody\n",
    "invalid yaml": "---\nname: [a\ntriggers: [/codereview]\n---\nbody\n",
    "tab indentation": "---\nname: a\n\ttriggers: [/codereview]\n---\n",
    "list frontmatter": "---\n- /codereview\n- b\n---\nbody\n",
    "scalar frontmatter": "---\n/codereview\n---\nbody\n",
    "impossible date": "---\nname: a\ncreated: 2024-02-30\ntriggers: [/codereview]\n---\n",
    "python tag": "---\nname: !!python/object/apply:os.system [true]\ntriggers: [x]\n---\n",
    "unhashable key": "---\n? [a, b]\n: 1\ntriggers: [/codereview]\n---\n",
    "deep nesting": "---\nname: " + "[" * 5000 + "]" * 5000 + "\ntriggers: [/codereview]\n---\n",
    "undefined alias": "---\nname: *nothing\ntriggers: [/codereview]\n---\n",
}


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run with the C loader when PyYAML has it, and with the pure-Python fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(guidelines, "_SAFE_LOADER", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")


@pytest.mark.usefixtures("yaml_loader")
@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_file_is_a_note_and_others_still_load(text: str) -> None:
    head = {".agents/skills/broken.md": text, ".agents/skills/good.md": skill(name="good")}
    result = load(head)
    assert [g.name for g in result.guidelines] == ["good"]
    assert len(result.notes) == 1
    assert "`.agents/skills/broken.md`" in result.notes[0] and "skipped" in result.notes[0]


def test_invalid_yaml_note_names_the_file_line() -> None:
    result = load({".agents/skills/a.md": "---\nname: a\ntriggers: [/codereview\n---\n"})
    assert "line" in result.notes[0]


def test_windows_line_endings_and_a_bom_are_read() -> None:
    text = "\ufeff" + skill(name="crlf").replace("\n", "\r\n")
    result = load({".agents/skills/a.md": text})
    assert [g.name for g in result.guidelines] == ["crlf"] and result.notes == ()


def test_an_empty_frontmatter_is_a_skill_without_triggers() -> None:
    result = load({".agents/skills/a.md": "---\n---\nbody\n"})
    assert result.guidelines == () and result.notes == ()


def test_size_bounds() -> None:
    filler = "x" * (MAX_SKILL_BYTES - 200)
    multibyte = "é" * (MAX_SKILL_BYTES // 2)  # under the limit in characters, over it in bytes
    head = {
        ".agents/skills/fits.md": skill(name="fits", body=filler),
        ".agents/skills/big.md": skill(name="big", body=filler + "x" * 400),
        ".agents/skills/wide.md": skill(name="wide", body=multibyte),
        ".agents/skills/front.md": skill(name="front", description="d" * MAX_FRONTMATTER_BYTES),
    }
    result = load(head)
    assert [g.name for g in result.guidelines] == ["fits"]
    assert len(result.notes) == 3
    for path, phrase in [("big", "256 KiB"), ("wide", "256 KiB"), ("front", "64 KiB")]:
        assert any(f".agents/skills/{path}.md" in note and phrase in note for note in result.notes)


def test_long_descriptions_are_cut() -> None:
    result = load({".agents/skills/a.md": skill(description="d" * 5000)})
    assert 0 < len(result.guidelines[0].description) <= 1024


def test_file_count_bound() -> None:
    head = {f".agents/skills/s{i:03}.md": skill(name=f"s{i:03}") for i in range(130)}
    result = load(head)
    assert len(result.guidelines) == MAX_SKILL_FILES
    assert [g.name for g in result.guidelines] == [f"s{i:03}" for i in range(MAX_SKILL_FILES)]
    assert len(result.notes) == 1 and "30 more" in result.notes[0]


@pytest.mark.usefixtures("yaml_loader")
def test_alias_bomb_is_cheap_and_notes_stay_short() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        previous, current = chr(96 + level), chr(97 + level)
        lines.append(f"{current}: &{current} [{', '.join(['*' + previous] * 9)}]")
    bomb = "\n".join(lines)
    text = (
        f"---\n{bomb}\ntriggers: [/codereview, *j]\ndescription: *j\n"
        "reviewbot:\n  rules: {some-rule: *j}\n  ignore_paths: *j\n  include_tests: *j\n---\n"
    )
    started = time.monotonic()
    result = load({".agents/skills/bomb.md": text}, {".agents/skills/bomb.md": text})
    assert time.monotonic() - started < 5
    assert [g.path for g in result.guidelines] == [".agents/skills/bomb.md"]
    assert result.config == DEFAULTS
    assert 1 <= len(result.notes) <= MAX_NOTES
    assert all(len(note) < 400 for note in result.notes)


def test_notes_are_capped_and_ignored_relaxations_come_first() -> None:
    settings = {
        "rules": {f"rule-{i}": "loud" for i in range(80)},
        "ignore_paths": ["src/**"],
    }
    result = load({CONFIG: config_only(settings)})
    assert len(result.notes) == MAX_NOTES
    assert result.notes[0].startswith("Ignored") and "src/**" in result.notes[0]
    assert "more guideline notes" in result.notes[-1]


def test_order_of_the_input_mappings_does_not_matter() -> None:
    files = {f".agents/skills/s{i}.md": skill(name=f"s{i}") for i in range(10)}
    files[".openhands/skills/s3.md"] = skill(name="legacy")
    files[CONFIG] = config_only({"freshness": {"min_age_days": 9}})
    keys = list(files)
    random.Random(7).shuffle(keys)
    shuffled = {key: files[key] for key in keys}
    assert load(files) == load(shuffled)


# ---- guidelines at base and head -------------------------------------------------------


def test_a_guideline_added_or_edited_by_the_pr_applies_from_head() -> None:
    base = {".agents/skills/a.md": skill(name="a", body="old")}
    head = {
        ".agents/skills/a.md": skill(name="a", body="new"),
        ".agents/skills/b.md": skill(name="b", body="added"),
    }
    result = load(head, base)
    assert [(g.name, g.source, g.body) for g in result.guidelines] == [
        ("a", "head", "new"),
        ("b", "head", "added"),
    ]
    assert result.notes == ()


@pytest.mark.parametrize(
    ("head_text", "phrase"),
    [
        (None, "deletes it"),
        ("---\nname: [broken\n---\n", "breaks it"),
        (skill(name="a", triggers=("deploy",)), "removes its `/codereview` trigger"),
        ("no frontmatter any more\n", "removes its `/codereview` trigger"),
    ],
    ids=["deleted", "broken", "trigger dropped", "frontmatter dropped"],
)
def test_a_guideline_the_pr_removes_still_applies_from_base(
    head_text: str | None, phrase: str
) -> None:
    base = {".agents/skills/a.md": skill(name="a", body="keep reviewing this")}
    head = {} if head_text is None else {".agents/skills/a.md": head_text}
    result = load(head, base)
    assert [(g.name, g.path, g.source, g.body) for g in result.guidelines] == [
        ("a", ".agents/skills/a.md", "base", "keep reviewing this")
    ]
    assert any(phrase in note and "`a`" in note for note in result.notes)


def test_a_guideline_moved_to_the_new_directory_applies_from_head() -> None:
    base = {".openhands/microagents/a.md": skill(name="a", body="old")}
    head = {".agents/skills/a/SKILL.md": skill(name="a", body="new")}
    result = load(head, base)
    assert names(result) == [("a", ".agents/skills/a/SKILL.md", "head")]
    assert result.notes == ()


def test_base_problems_are_not_reported_but_head_ones_are() -> None:
    broken = "---\nname: [x\n---\n"
    fixed = load({".agents/skills/a.md": skill()}, {".agents/skills/a.md": broken})
    assert fixed.notes == ()
    still = load({".agents/skills/a.md": broken}, {".agents/skills/a.md": broken})
    assert len(still.notes) == 1


# ---- built-in skills -------------------------------------------------------------------


def test_builtin_skills_always_apply_and_their_settings_are_not_read() -> None:
    builtin = {
        "skills/rule-b.md": "---\nname: rule-b\ndescription: B\n---\n## What it does\nb\n",
        "skills/rule-a.md": "## What it does\nno frontmatter\n",
        "skills/rule-c/SKILL.md": skill(
            name="rule-c", triggers=None, settings={"review": {"approve": False}}
        ),
        "skills/README.md": "the format note",
    }
    result = load_guidelines({".agents/skills/x.md": skill()}, {}, builtin)
    assert [(g.name, g.path, g.source) for g in result.guidelines] == [
        ("rule-a", "skills/rule-a.md", "builtin"),
        ("rule-b", "skills/rule-b.md", "builtin"),
        ("rule-c", "skills/rule-c/SKILL.md", "builtin"),
        ("x", ".agents/skills/x.md", "head"),
    ]
    assert result.config == DEFAULTS
    assert result.notes == ()


def test_a_broken_builtin_skill_is_a_note() -> None:
    result = load_guidelines({}, {}, {"skills/bad.md": "---\nname: [x\n---\n"})
    assert result.guidelines == ()
    assert len(result.notes) == 1 and "skills/bad.md" in result.notes[0]


def test_builtin_skill_texts_reads_skill_files_only(tmp_path: Path) -> None:
    (tmp_path / "one.md").write_text("one", encoding="utf-8")
    (tmp_path / "README.md").write_text("about", encoding="utf-8")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "SKILL.md").write_text("two", encoding="utf-8")
    (tmp_path / "two" / "example.md").write_text("not a skill", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not markdown", encoding="utf-8")
    assert builtin_skill_texts(tmp_path) == {"skills/one.md": "one", "skills/two/SKILL.md": "two"}
    assert builtin_skill_texts(tmp_path / "missing") == {}


def test_the_shipped_builtin_skills_load_cleanly() -> None:
    texts = builtin_skill_texts(BUILTIN_SKILLS_DIR)
    result = load_guidelines({}, {}, texts)
    assert result.notes == ()
    assert len(result.guidelines) == len(texts)
    for guideline in result.guidelines:
        headings = [
            line.lstrip("#").strip().lower()
            for line in guideline.body.splitlines()
            if line.startswith("#")
        ]
        for section in ("what it does", "why", "example", "use instead"):
            assert any(heading.startswith(section) for heading in headings), (
                guideline.path,
                section,
            )


# ---- settings: the base-versus-head security model -------------------------------------

# (id, base settings or None, head settings, config field, value without the relaxation,
#  the relaxed value, what the note says). A relaxation is a value the head sets or a base
# value the head drops. The relaxed value is what the config holds
# once the base branch carries the same settings as the head.
RELAXING: list[tuple[str, Any, Any, str, Any, Any, str]] = [
    (
        "rule off",
        None,
        {"rules": {"send-run": "off"}},
        "rule_severity",
        {},
        {"send-run": "off"},
        "rules.send-run: off",
    ),
    (
        "severity lowered from base",
        {"rules": {"send-run": "critical"}},
        {"rules": {"send-run": "suggestion"}},
        "rule_severity",
        {"send-run": Severity.CRITICAL},
        {"send-run": Severity.SUGGESTION},
        "rules.send-run: suggestion",
    ),
    (
        "severity below an unknown default",
        None,
        {"rules": {"send-run": "important"}},
        "rule_severity",
        {},
        {"send-run": Severity.IMPORTANT},
        "rules.send-run: important",
    ),
    (
        "age lowered",
        None,
        {"freshness": {"min_age_days": 2}},
        "min_age_days",
        DEFAULTS.min_age_days,
        2.0,
        "min_age_days: 2",
    ),
    (
        "age lowered from base",
        {"freshness": {"min_age_days": 30}},
        {"freshness": {"min_age_days": 10}},
        "min_age_days",
        30.0,
        10.0,
        "min_age_days: 10",
    ),
    (
        "exemption added",
        {"freshness": {"exempt": ["first-*"]}},
        {"freshness": {"exempt": ["first-*", "openhands-*"]}},
        "exempt",
        ("first-*",),
        ("first-*", "openhands-*"),
        "openhands-*",
    ),
    (
        "ignored path added",
        None,
        {"ignore_paths": ["vendor/**"]},
        "ignore_paths",
        (),
        ("vendor/**",),
        "vendor/**",
    ),
    (
        "include_tests switched off",
        {"include_tests": True},
        {"include_tests": False},
        "include_tests",
        True,
        False,
        "include_tests: false",
    ),
    (
        "approve switched on",
        {"review": {"approve": False}},
        {"review": {"approve": True}},
        "approve",
        False,
        True,
        "review.approve: true",
    ),
    (
        "severity removed, default unknown",
        {"rules": {"send-run": "important"}},
        {},
        "rule_severity",
        {"send-run": Severity.IMPORTANT},
        {},
        "rules.send-run: important` from the base branch",
    ),
    (
        "age removed",
        {"freshness": {"min_age_days": 21}},
        {"freshness": {}},
        "min_age_days",
        21.0,
        DEFAULTS.min_age_days,
        "min_age_days: 21` from the base branch",
    ),
    (
        "pin removed",
        {"freshness": {"pins": [PIN]}},
        {"freshness": {"pins": []}},
        "pins",
        (PIN_MAPPING,),
        (),
        "pypi:oh-server` from the base branch",
    ),
    (
        "request_changes switched off",
        {"review": {"request_changes": True}},
        {"review": {"request_changes": False}},
        "request_changes",
        True,
        False,
        "review.request_changes: false",
    ),
]


@pytest.mark.parametrize(
    ("base", "head", "attr", "kept", "relaxed", "fragment"),
    [case[1:] for case in RELAXING],
    ids=[case[0] for case in RELAXING],
)
def test_a_relaxation_added_by_the_pr_alone_is_ignored_with_a_note(
    base: Any, head: Any, attr: str, kept: Any, relaxed: Any, fragment: str
) -> None:
    base_files = {} if base is None else {CONFIG: config_only(base)}
    result = load({CONFIG: config_only(head)}, base_files)
    assert getattr(result.config, attr) == kept
    assert len(result.notes) == 1
    assert fragment in result.notes[0] and CONFIG in result.notes[0]
    # A value the head sets is "ignored"; one the head drops is "kept" from base.
    assert result.notes[0].startswith(("Ignored", "Kept"))


@pytest.mark.parametrize(
    ("head", "attr", "relaxed"),
    [(case[2], case[3], case[5]) for case in RELAXING],
    ids=[case[0] for case in RELAXING],
)
def test_the_same_relaxation_present_at_base_takes_effect(
    head: Any, attr: str, relaxed: Any
) -> None:
    # At base in another file than at head: what counts is that the base branch has it.
    base = {".openhands/microagents/base-config.md": config_only(head)}
    result = load({CONFIG: config_only(head)}, base)
    assert getattr(result.config, attr) == relaxed
    assert result.notes == ()


@pytest.mark.parametrize(
    ("head_settings", "relaxed_attr", "fragment"),
    [
        ({"rules": {"send-run": "off"}}, "rule_severity", "rules.send-run: off"),
        ({"freshness": {"min_age_days": 1}}, "min_age_days", "min_age_days: 1"),
        ({"ignore_paths": "docs/**"}, "ignore_paths", "docs/**"),
        ({"review": {"approve": True}}, "approve", "review.approve: true"),
    ],
)
def test_a_relaxation_in_an_edited_guideline_is_ignored_but_its_text_applies(
    head_settings: Any, relaxed_attr: str, fragment: str
) -> None:
    base_settings = {"review": {"approve": False}}
    base = {".agents/skills/a.md": skill(name="a", body="old", settings=base_settings)}
    head = {".agents/skills/a.md": skill(name="a", body="new", settings=head_settings)}
    result = load(head, base)
    assert [(g.source, g.body) for g in result.guidelines] == [("head", "new")]
    assert result.config == ReviewConfig(approve=False)
    assert any(fragment in note and ".agents/skills/a.md" in note for note in result.notes)


STRICTER: list[tuple[str, Any, Any, dict[str, Any], Any]] = [
    # (id, base settings or None, head settings, rule_defaults, expected config)
    ("severity raised to critical", None, {"rules": {"r": "critical"}}, {}, None),
    (
        "severity raised above a known default",
        None,
        {"rules": {"r": "important"}},
        {"r": Severity.SUGGESTION},
        None,
    ),
    (
        "severity raised from base",
        {"rules": {"r": "important"}},
        {"rules": {"r": "critical"}},
        {},
        None,
    ),
    ("rule turned back on", {"rules": {"r": "off"}}, {"rules": {"r": "suggestion"}}, {}, None),
    ("age raised", None, {"freshness": {"min_age_days": 21}}, {}, None),
    (
        "age raised from base",
        {"freshness": {"min_age_days": 1}},
        {"freshness": {"min_age_days": 3}},
        {},
        None,
    ),
    ("pin added", None, {"freshness": {"pins": [PIN]}}, {}, None),
    ("include_tests on", None, {"include_tests": True}, {}, None),
    ("approve off", None, {"review": {"approve": False}}, {}, None),
    ("request_changes on", None, {"review": {"request_changes": True}}, {}, None),
    (
        "exemption removed",
        {"freshness": {"exempt": ["a-*", "b-*"]}},
        {"freshness": {"exempt": ["b-*"]}},
        {},
        None,
    ),
    (
        "ignored path removed",
        {"ignore_paths": ["x/**", "y/**"]},
        {"ignore_paths": ["y/**"]},
        {},
        None,
    ),
]


def expected_config(settings: Any) -> ReviewConfig:
    """The config the settings mean on their own (what base+head both having them gives)."""
    result = load({CONFIG: config_only(settings)}, {CONFIG: config_only(settings)})
    assert result.notes == ()
    return result.config


@pytest.mark.parametrize(
    ("base", "head", "defaults"),
    [case[1:4] for case in STRICTER],
    ids=[case[0] for case in STRICTER],
)
def test_a_stricter_setting_applies_from_head_at_once(
    base: Any, head: Any, defaults: dict[str, Severity]
) -> None:
    base_files = {} if base is None else {CONFIG: config_only(base)}
    result = load({CONFIG: config_only(head)}, base_files, rule_defaults=defaults)
    assert result.config == expected_config(head)
    assert result.config != expected_config(base or {})
    assert result.notes == ()


def test_removing_a_base_relaxation_is_stricter_and_applies() -> None:
    relaxed = {
        "rules": {"r": "off"},
        "freshness": {"min_age_days": 1, "exempt": ["a-*"]},
        "ignore_paths": ["x/**"],
        "review": {"approve": True},
    }
    result = load({}, {CONFIG: config_only(relaxed)})
    assert result.config == DEFAULTS
    assert result.notes == ()


def test_removing_a_base_strictness_keeps_it_and_says_so() -> None:
    strict = {
        "rules": {"r": "critical"},
        "freshness": {"min_age_days": 14, "pins": [PIN]},
        "include_tests": True,
        "review": {"approve": False, "request_changes": True},
    }
    result = load({}, {".openhands/skills/strict.md": config_only(strict)})
    assert result.config == expected_config(strict)
    kept = [note for note in result.notes if note.startswith("Kept")]
    assert len(kept) == len(result.notes) == 6
    assert all(".openhands/skills/strict.md" in note for note in kept)
    assert any("min_age_days: 14" in note for note in kept)
    assert any("pins" in note and "pypi:oh-server" in note for note in kept)


def test_within_a_branch_the_strictest_value_wins_and_lists_are_joined() -> None:
    head = {
        ".agents/skills/a.md": config_only(
            {
                "rules": {"r": "important", "s": "off"},
                "freshness": {"min_age_days": 10, "exempt": ["a-*"]},
                "review": {"approve": True},
            }
        ),
        ".agents/skills/b.md": config_only(
            {
                "rules": {"r": "critical"},
                "freshness": {"min_age_days": 20, "exempt": ["b-*"]},
                "review": {"approve": False},
            }
        ),
    }
    result = load(head, head)
    assert result.notes == ()
    assert result.config == ReviewConfig(
        rule_severity={"r": Severity.CRITICAL, "s": "off"},
        min_age_days=20.0,
        exempt=("a-*", "b-*"),
        approve=False,
    )


def test_a_bare_yaml_off_turns_a_rule_off() -> None:
    text = "---\nreviewbot:\n  rules: {conversation-send-missing-run: off, Other-Rule: OFF}\n---\n"
    result = load({CONFIG: text}, {CONFIG: text})
    assert result.config.rule_severity == {
        "conversation-send-missing-run": "off",
        "other-rule": "off",
    }
    assert not result.config.enabled("conversation-send-missing-run")
    assert result.notes == ()


def test_settings_from_a_broken_head_file_fall_back_to_base() -> None:
    base = {CONFIG: config_only({"review": {"approve": False}, "ignore_paths": ["x/**"]})}
    head = {CONFIG: "---\nreviewbot: [oops\n---\n"}
    result = load(head, base)
    # approve: false stays (removing it relaxes), the ignored path goes (removing it is stricter).
    assert result.config == ReviewConfig(approve=False)
    assert any("skipped" in note for note in result.notes)
    assert any("review.approve: false" in note for note in result.notes)


LEVELS: list[Any] = [None, "off", "suggestion", "important", "critical"]
RANK = {"off": 0, "suggestion": 1, "important": 2, "critical": 3}


def random_settings(rng: random.Random) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    rules = {rule: level for rule in ("r1", "r2") if (level := rng.choice(LEVELS)) is not None}
    if rules:
        settings["rules"] = rules
    freshness: dict[str, Any] = {}
    if rng.random() < 0.6:
        freshness["min_age_days"] = rng.choice([0, 1, 7, 14.5])
    if rng.random() < 0.6:
        freshness["exempt"] = rng.sample(["a-*", "b-*", "c"], rng.randint(0, 3))
    if rng.random() < 0.6:
        freshness["pins"] = [
            {"file": f"f{i}.json", "key": "v", "package": "npm:p"} for i in rng.sample([1, 2, 3], 2)
        ]
    if freshness:
        settings["freshness"] = freshness
    if rng.random() < 0.6:
        settings["ignore_paths"] = rng.sample(["x/**", "y/**"], rng.randint(0, 2))
    for key in ("include_tests",):
        if rng.random() < 0.6:
            settings[key] = rng.random() < 0.5
    review = {
        key: rng.random() < 0.5 for key in ("approve", "request_changes") if rng.random() < 0.6
    }
    if review:
        settings["review"] = review
    return settings


def test_the_effective_config_is_always_the_stricter_of_base_and_head() -> None:
    rng = random.Random(20240501)
    defaults = {"r1": Severity.IMPORTANT}
    for _ in range(300):
        base_settings, head_settings = random_settings(rng), random_settings(rng)
        base = {".agents/skills/base.md": config_only(base_settings)}
        head = {".openhands/skills/head.md": config_only(head_settings)}
        config = load(head, base, rule_defaults=defaults).config
        alone_base, alone_head = expected_config(base_settings), expected_config(head_settings)
        context = (base_settings, head_settings)

        assert config.min_age_days == max(alone_base.min_age_days, alone_head.min_age_days), context
        assert set(config.exempt) == set(alone_base.exempt) & set(alone_head.exempt), context
        assert set(config.ignore_paths) == set(alone_base.ignore_paths) & set(
            alone_head.ignore_paths
        ), context
        assert set(config.pins) == set(alone_base.pins) | set(alone_head.pins), context
        assert config.include_tests == (alone_base.include_tests or alone_head.include_tests)
        assert config.approve == (alone_base.approve and alone_head.approve), context
        assert config.request_changes == (
            alone_base.request_changes or alone_head.request_changes
        ), context
        for rule in ("r1", "r2"):
            # Unset means the default: known for r1; for r2 it is read as lax at head and
            # strict at base, so neither a PR-only severity nor a removal can lower it.
            base_level = level_of(alone_base, rule)
            head_level = level_of(alone_head, rule)
            known = 2 if rule in defaults else None
            head_low = head_level if head_level is not None else known or 1
            base_high = base_level if base_level is not None else known or 3
            wanted = head_level if head_low >= base_high else base_level
            assert level_of(config, rule) == wanted, context


def level_of(config: ReviewConfig, rule: str) -> int | None:
    value = config.rule_severity.get(rule)
    return None if value is None else RANK["off" if value == "off" else Severity(value).value]


# ---- invalid values --------------------------------------------------------------------

INVALID: list[tuple[str, Any, str]] = [
    ("unknown severity", {"rules": {"send-run": "blocker"}}, "reviewbot.rules.send-run"),
    ("severity of wrong type", {"rules": {"send-run": 3}}, "reviewbot.rules.send-run"),
    ("yaml on is not a severity", {"rules": {"send-run": True}}, "reviewbot.rules.send-run"),
    ("bad rule id", {"rules": {"send run!": "off"}}, "reviewbot.rules.send run!"),
    ("rules not a mapping", {"rules": ["send-run"]}, "reviewbot.rules"),
    ("negative age", {"freshness": {"min_age_days": -1}}, "min_age_days"),
    ("age as text", {"freshness": {"min_age_days": "7"}}, "min_age_days"),
    ("age as bool", {"freshness": {"min_age_days": True}}, "min_age_days"),
    ("age not finite", {"freshness": {"min_age_days": float("inf")}}, "min_age_days"),
    ("age not a number", {"freshness": {"min_age_days": float("nan")}}, "min_age_days"),
    ("age too large", {"freshness": {"min_age_days": 10**400}}, "min_age_days"),
    ("exempt not a list", {"freshness": {"exempt": {"a": 1}}}, "freshness.exempt"),
    ("exempt entry not text", {"freshness": {"exempt": [1]}}, "freshness.exempt"),
    ("exempt entry empty", {"freshness": {"exempt": [" "]}}, "freshness.exempt"),
    ("pins not a list", {"freshness": {"pins": PIN}}, "freshness.pins"),
    ("pin missing package", {"freshness": {"pins": [{"file": "a.json", "key": "v"}]}}, "pins"),
    ("pin with extra key", {"freshness": {"pins": [{**PIN, "x": 1}]}}, "pins"),
    ("pin outside the repo", {"freshness": {"pins": [{**PIN, "file": "../x.json"}]}}, "pins"),
    ("pin absolute path", {"freshness": {"pins": [{**PIN, "file": "/etc/x.json"}]}}, "pins"),
    ("pin without ecosystem", {"freshness": {"pins": [{**PIN, "package": "oh-server"}]}}, "pins"),
    ("pin not a mapping", {"freshness": {"pins": ["config/defaults.json"]}}, "pins"),
    ("unknown freshness key", {"freshness": {"max_age": 3}}, "freshness.max_age"),
    ("freshness not a mapping", {"freshness": 7}, "reviewbot.freshness"),
    ("ignore_paths not a list", {"ignore_paths": 3}, "ignore_paths"),
    ("include_tests as text", {"include_tests": "yes"}, "include_tests"),
    ("approve as text", {"review": {"approve": "no"}}, "review.approve"),
    ("request_changes as number", {"review": {"request_changes": 1}}, "review.request_changes"),
    ("unknown review key", {"review": {"dismiss": True}}, "review.dismiss"),
    ("review not a mapping", {"review": "comment"}, "reviewbot.review"),
    ("unknown top-level key", {"rule": {"send-run": "off"}}, "reviewbot.rule"),
    ("settings not a mapping", ["rules"], "`reviewbot`"),
]


@pytest.mark.parametrize(
    ("settings", "fragment"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_an_invalid_value_is_a_note_and_the_setting_is_ignored(
    settings: Any, fragment: str
) -> None:
    # Present at base and head alike, so only validity decides whether it applies.
    text = config_only(settings)
    result = load({CONFIG: text}, {CONFIG: text})
    assert result.config == DEFAULTS
    assert len(result.notes) == 1
    assert fragment in result.notes[0] and CONFIG in result.notes[0]


def test_valid_settings_beside_an_invalid_one_still_apply() -> None:
    settings = {
        "rules": {"a": "critical", "b": "loud"},
        "freshness": {"min_age_days": 14, "exempt": ["ok-*", 5]},
    }
    result = load({CONFIG: config_only(settings)}, {CONFIG: config_only(settings)})
    assert result.config == ReviewConfig(
        rule_severity={"a": Severity.CRITICAL}, min_age_days=14.0, exempt=("ok-*",)
    )
    assert len(result.notes) == 2


def test_unknown_rules_are_a_note_when_the_caller_lists_the_rules() -> None:
    text = config_only({"rules": {"known": "critical", "typo-rule": "critical"}})
    result = load({CONFIG: text}, {}, known_rules={"known"})
    assert result.config.rule_severity == {"known": Severity.CRITICAL}
    assert len(result.notes) == 1 and "typo-rule" in result.notes[0]


def test_a_huge_invalid_value_is_not_echoed_whole() -> None:
    text = config_only({"rules": {"r": "x" * 20000}})
    result = load({CONFIG: text})
    assert len(result.notes) == 1 and len(result.notes[0]) < 400


def test_backticks_in_a_path_do_not_break_out_of_code_spans() -> None:
    path = ".agents/skills/a`b.md"
    result = load({path: "---\nname: [x\n---\n"})
    assert "``.agents/skills/a`b.md``" in result.notes[0]
