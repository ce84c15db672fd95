"""package.json: exact versions in every dependency section, overrides and resolutions."""

from __future__ import annotations

import json

import pytest

from reviewbot.checks.deps import introduced
from tests.checks.deps.helpers import changed_file, found, keys, on_added_lines


def manifest(**sections: object) -> str:
    data: dict[str, object] = {"name": "app", "version": "1.0.0", **sections}
    return json.dumps(data, indent=2) + "\n"


BASE = manifest(
    dependencies={"left-pad": "1.3.0", "react": "^18.0.0", "@scope/util": "2.0.0"},
    devDependencies={"typescript": "5.4.0"},
)

# (id, head, expected (ecosystem, name, version) keys)
INTRODUCED = [
    (
        "exact bump",
        manifest(
            dependencies={"left-pad": "1.3.1", "react": "^18.0.0", "@scope/util": "2.0.0"},
            devDependencies={"typescript": "5.4.0"},
        ),
        {("npm", "left-pad", "1.3.1")},
    ),
    (
        "new exact dependency, = and v prefixes",
        manifest(
            dependencies={
                "left-pad": "1.3.0",
                "react": "^18.0.0",
                "@scope/util": "2.0.0",
                "is-odd": "=3.0.1",
                "is-even": "v1.0.0",
            },
            devDependencies={"typescript": "5.4.0"},
        ),
        {("npm", "is-odd", "3.0.1"), ("npm", "is-even", "1.0.0")},
    ),
    (
        "scoped bump in devDependencies section move",
        manifest(
            dependencies={"left-pad": "1.3.0", "react": "^18.0.0"},
            devDependencies={"typescript": "5.4.0", "@scope/util": "2.1.0-beta.1"},
        ),
        {("npm", "@scope/util", "2.1.0-beta.1")},
    ),
    (
        "peer and optional sections",
        manifest(
            dependencies={"left-pad": "1.3.0", "react": "^18.0.0", "@scope/util": "2.0.0"},
            devDependencies={"typescript": "5.4.0"},
            peerDependencies={"vue": "3.4.1"},
            optionalDependencies={"fsevents": "2.3.3"},
        ),
        {("npm", "vue", "3.4.1"), ("npm", "fsevents", "2.3.3")},
    ),
    (
        "npm alias installs the real package",
        manifest(
            dependencies={
                "left-pad": "1.3.0",
                "react": "^18.0.0",
                "@scope/util": "2.0.0",
                "pad": "npm:string-pad@1.1.0",
            },
            devDependencies={"typescript": "5.4.0"},
        ),
        {("npm", "string-pad", "1.1.0")},
    ),
    (
        "overrides, nested overrides, '.' and resolutions, pnpm.overrides",
        manifest(
            dependencies={"left-pad": "1.3.0", "react": "^18.0.0", "@scope/util": "2.0.0"},
            devDependencies={"typescript": "5.4.0"},
            overrides={"semver": "7.6.0", "foo": {".": "1.0.0", "bar": "2.0.0"}},
            resolutions={"**/minimist": "1.2.8", "@babel/core@7": "7.24.0"},
            pnpm={"overrides": {"a>b": "4.0.0"}},
        ),
        {
            ("npm", "semver", "7.6.0"),
            ("npm", "foo", "1.0.0"),
            ("npm", "bar", "2.0.0"),
            ("npm", "minimist", "1.2.8"),
            ("npm", "@babel/core", "7.24.0"),
            ("npm", "b", "4.0.0"),
        },
    ),
]

NOTHING = [
    (
        "range bump (the lockfile pins the version)",
        manifest(
            dependencies={"left-pad": "1.3.0", "react": "^18.3.0", "@scope/util": "2.0.0"},
            devDependencies={"typescript": "5.4.0"},
        ),
    ),
    (
        "new ranges, tags and workspace packages",
        manifest(
            dependencies={
                "left-pad": "1.3.0",
                "react": "^18.0.0",
                "@scope/util": "2.0.0",
                "a": "~1.2.3",
                "b": "latest",
                "c": ">=1 <2",
                "d": "1.x",
                "e": "workspace:*",
                "f": "catalog:",
                "g": "1.2",
            },
            devDependencies={"typescript": "5.4.0"},
        ),
    ),
    (
        "removed dependency",
        manifest(dependencies={"react": "^18.0.0"}, devDependencies={"typescript": "5.4.0"}),
    ),
    (
        "own version and engines are not dependencies",
        json.dumps(
            {
                "name": "app",
                "version": "2.0.0",
                "engines": {"node": "20.0.0"},
                "dependencies": {
                    "left-pad": "1.3.0",
                    "react": "^18.0.0",
                    "@scope/util": "2.0.0",
                },
                "devDependencies": {"typescript": "5.4.0"},
            },
            indent=2,
        )
        + "\n",
    ),
    (
        "reordered, unchanged versions",
        manifest(
            devDependencies={"typescript": "5.4.0"},
            dependencies={"@scope/util": "2.0.0", "left-pad": "1.3.0", "react": "^18.0.0"},
        ),
    ),
]

UNVERIFIABLE = [
    ("github:user/repo#abc123", "installed from a git repository"),
    ("user/repo", "installed from a git repository"),
    ("git+https://github.com/user/repo.git#v1", "installed from a git repository"),
    ("git+ssh://git@github.com/user/repo.git", "installed from a git repository"),
    ("https://example.com/pkg-1.0.0.tgz", "installed from a URL outside the registry"),
    ("file:../local", "installed from a local path"),
    ("link:../linked", "installed from a local path"),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "head", "expected"), INTRODUCED, ids=[c[0] for c in INTRODUCED])
def test_introduced_exact_versions(
    case: str, head: str, expected: set[object], whole: bool
) -> None:
    deps = found("package.json", BASE, head, whole=whole)
    assert keys(deps) == expected
    assert all(dep.source is None for dep in deps)
    assert on_added_lines("package.json", BASE, head, whole=whole)


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "head"), NOTHING, ids=[c[0] for c in NOTHING])
def test_nothing_introduced(case: str, head: str, whole: bool) -> None:
    assert found("package.json", BASE, head, whole=whole) == []


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("spec", "reason"), UNVERIFIABLE)
def test_sources_outside_the_registry(spec: str, reason: str, whole: bool) -> None:
    head = manifest(
        dependencies={
            "left-pad": "1.3.0",
            "react": "^18.0.0",
            "@scope/util": "2.0.0",
            "mine": spec,
        },
        devDependencies={"typescript": "5.4.0"},
    )
    (dep,) = found("package.json", BASE, head, whole=whole)
    assert (dep.name, dep.version, dep.source) == ("mine", spec, reason)
    assert dep.line == head.splitlines().index(f'    "mine": "{spec}"') + 1


def test_new_manifest_counts_every_exact_version() -> None:
    head = manifest(dependencies={"a": "1.0.0", "b": "^2.0.0"}, devDependencies={"c": "3.0.0"})
    deps = found("package.json", None, head)
    assert keys(deps) == {("npm", "a", "1.0.0"), ("npm", "c", "3.0.0")}


def test_invalid_json_falls_back_to_the_diff_with_a_note() -> None:
    head = BASE.replace('"left-pad": "1.3.0"', '"left-pad": "1.3.1"').replace("}\n", "", 1)
    result = introduced(changed_file("package.json", BASE, head))
    assert ("npm", "left-pad", "1.3.1") in {dep.key for dep in result.deps}
    assert any("could not read it as a package.json" in note for note in result.notes)


def test_diff_without_the_section_header_is_noted_not_guessed() -> None:
    # A long dependencies block: the hunk's context does not reach the section header.
    many = {f"pkg{i}": f"1.0.{i}" for i in range(30)}
    base = manifest(dependencies=many)
    bumped = dict(many, pkg20="1.0.99")
    head = manifest(dependencies=bumped)
    result = introduced(changed_file("package.json", base, head, whole=False))
    assert result.deps == ()
    assert any("could not be tied to a dependency" in note for note in result.notes)
    whole = introduced(changed_file("package.json", base, head, whole=True))
    assert {dep.key for dep in whole.deps} == {("npm", "pkg20", "1.0.99")}
