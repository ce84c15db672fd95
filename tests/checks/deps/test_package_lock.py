"""package-lock.json v1/v2/v3: installed packages, nested and scoped, links and workspaces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reviewbot.checks.deps import introduced
from tests.checks.deps.helpers import changed_file, found, keys, on_added_lines


def tarball(name: str, version: str) -> str:
    return f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def entry(name: str, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "resolved": tarball(name, version),
        "integrity": f"sha512-{name}{version}",
        **extra,
    }


def v3(packages: dict[str, dict[str, Any]], legacy: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {
        "name": "app",
        "version": "1.0.0",
        "lockfileVersion": 3 if legacy is None else 2,
        "requires": True,
        "packages": {"": {"name": "app", "version": "1.0.0"}, **packages},
    }
    if legacy is not None:
        data["dependencies"] = legacy
    return json.dumps(data, indent=2) + "\n"


BASE_PACKAGES: dict[str, dict[str, Any]] = {
    "node_modules/left-pad": entry("left-pad", "1.3.0"),
    "node_modules/@scope/util": entry("@scope/util", "2.0.0", dependencies={"ms": "^2.1.0"}),
    "node_modules/a/node_modules/ms": entry("ms", "2.0.0"),
    "node_modules/ms": entry("ms", "2.1.3"),
    "packages/web": {"name": "web", "version": "0.1.0"},
    "node_modules/web": {"resolved": "packages/web", "link": True},
}
BASE = v3(BASE_PACKAGES)


CASES = [
    (
        "top-level bump",
        {"node_modules/left-pad": entry("left-pad", "1.3.1")},
        {("npm", "left-pad", "1.3.1")},
    ),
    (
        "scoped bump",
        {"node_modules/@scope/util": entry("@scope/util", "2.1.0")},
        {("npm", "@scope/util", "2.1.0")},
    ),
    (
        "nested copy bumped while the top-level one stays",
        {"node_modules/a/node_modules/ms": entry("ms", "2.0.1")},
        {("npm", "ms", "2.0.1")},
    ),
    (
        "new nested scoped package",
        {"node_modules/a/node_modules/@types/node": entry("@types/node", "20.11.5")},
        {("npm", "@types/node", "20.11.5")},
    ),
    (
        "alias entry carries the real name",
        {"node_modules/pad": {**entry("string-pad", "1.1.0"), "name": "string-pad"}},
        {("npm", "string-pad", "1.1.0")},
    ),
    (
        "workspace folder version bump is not a registry package",
        {"packages/web": {"name": "web", "version": "0.2.0"}},
        set(),
    ),
    ("new workspace link", {"node_modules/api": {"resolved": "packages/api", "link": True}}, set()),
    (
        "integrity-only change",
        {"node_modules/left-pad": {**entry("left-pad", "1.3.0"), "integrity": "sha512-other"}},
        set(),
    ),
    (
        "local file: dependency",
        {"node_modules/local": {"version": "1.0.0", "resolved": "file:../local"}},
        set(),
    ),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_v3_changes(case: str, changes: dict[str, Any], expected: set[object], whole: bool) -> None:
    head = v3({**BASE_PACKAGES, **changes})
    deps = found("package-lock.json", BASE, head, whole=whole)
    assert keys(deps) == expected
    assert on_added_lines("package-lock.json", BASE, head, whole=whole)


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_removed_package_is_not_a_finding(whole: bool) -> None:
    head = v3({k: v for k, v in BASE_PACKAGES.items() if k != "node_modules/left-pad"})
    assert found("package-lock.json", BASE, head, whole=whole) == []


def test_finding_points_at_the_version_line_of_the_entry() -> None:
    head = v3({**BASE_PACKAGES, "node_modules/left-pad": entry("left-pad", "1.3.1")})
    (dep,) = found("package-lock.json", BASE, head)
    lines = head.splitlines()
    key_line = lines.index('    "node_modules/left-pad": {')
    assert lines[(dep.line or 0) - 1].strip() == '"version": "1.3.1",'
    assert dep.line == key_line + 2


def test_every_copy_of_a_version_is_listed() -> None:
    head = v3(
        {
            **BASE_PACKAGES,
            "node_modules/b/node_modules/debug": entry("debug", "4.3.5"),
            "node_modules/c/node_modules/debug": entry("debug", "4.3.5"),
        }
    )
    deps = found("package-lock.json", BASE, head)
    assert keys(deps) == {("npm", "debug", "4.3.5")}
    assert len({dep.line for dep in deps}) == 2


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(
    ("resolved", "reason"),
    [
        ("git+ssh://git@github.com/user/repo.git#0123abc", "installed from a git repository"),
        (
            "https://codeload.github.com/user/repo/tar.gz/0123abc",
            "installed from a tarball outside the registry",
        ),
    ],
)
def test_git_and_tarball_sources_are_undatable(resolved: str, reason: str, whole: bool) -> None:
    head = v3({**BASE_PACKAGES, "node_modules/forked": {"version": "1.0.0", "resolved": resolved}})
    (dep,) = found("package-lock.json", BASE, head, whole=whole)
    assert (dep.name, dep.version, dep.source) == ("forked", resolved, reason)


V1_BASE = {
    "left-pad": {"version": "1.3.0", "resolved": tarball("left-pad", "1.3.0")},
    "express": {
        "version": "4.18.0",
        "resolved": tarball("express", "4.18.0"),
        "requires": {"debug": "2.6.9"},
        "dependencies": {
            "debug": {"version": "2.6.9", "resolved": tarball("debug", "2.6.9")},
        },
    },
}


def v1(dependencies: dict[str, Any]) -> str:
    data = {"name": "app", "version": "1.0.0", "lockfileVersion": 1, "dependencies": dependencies}
    return json.dumps(data, indent=2) + "\n"


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_v1_tree_nested_bump_and_git_version(whole: bool) -> None:
    head_tree = json.loads(json.dumps(V1_BASE))
    head_tree["express"]["dependencies"]["debug"] = {
        "version": "2.6.10",
        "resolved": tarball("debug", "2.6.10"),
    }
    head_tree["mine"] = {"version": "github:user/mine#0123abc", "from": "github:user/mine"}
    head_tree["pad"] = {
        "version": "npm:string-pad@1.1.0",
        "resolved": tarball("string-pad", "1.1.0"),
    }
    deps = found("package-lock.json", v1(V1_BASE), v1(head_tree), whole=whole)
    assert keys(deps) == {
        ("npm", "debug", "2.6.10"),
        ("npm", "mine", "github:user/mine#0123abc"),
        ("npm", "string-pad", "1.1.0"),
    }
    assert on_added_lines("package-lock.json", v1(V1_BASE), v1(head_tree), whole=whole)


def test_v2_shows_the_packages_entry_not_the_legacy_tree_too() -> None:
    legacy_base = {"left-pad": {"version": "1.3.0"}}
    legacy_head = {"left-pad": {"version": "1.3.1"}}
    base = v3(BASE_PACKAGES, legacy_base)
    head = v3({**BASE_PACKAGES, "node_modules/left-pad": entry("left-pad", "1.3.1")}, legacy_head)
    for whole in (True, False):
        deps = found("package-lock.json", base, head, whole=whole)
        assert keys(deps) == {("npm", "left-pad", "1.3.1")}
        (dep,) = deps
        assert head.splitlines()[(dep.line or 0) - 2].strip() == '"node_modules/left-pad": {'


def test_a_new_lockfile_lists_everything_installed() -> None:
    deps = found("package-lock.json", None, BASE)
    assert keys(deps) == {
        ("npm", "left-pad", "1.3.0"),
        ("npm", "@scope/util", "2.0.0"),
        ("npm", "ms", "2.0.0"),
        ("npm", "ms", "2.1.3"),
    }


def test_unreadable_lockfile_is_noted() -> None:
    head = BASE.replace('"1.3.0"', '"1.3.1"').rstrip()[:-1]  # truncated JSON
    result = introduced(changed_file("package-lock.json", BASE, head))
    assert any("could not read it as a package-lock.json" in note for note in result.notes)
    assert ("npm", "left-pad", "1.3.1") in {dep.key for dep in result.deps}
