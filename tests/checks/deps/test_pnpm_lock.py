"""pnpm-lock.yaml: v5 (/name/1.0.0_peer), v6 (/name@1.0.0(peer)) and v9 (name@1.0.0) keys."""

from __future__ import annotations

import pytest

from reviewbot.checks.deps import introduced
from reviewbot.checks.deps.pnpm import pnpm_key
from tests.checks.deps.helpers import changed_file, dedent, found, keys, on_added_lines

V9_BASE = dedent(
    """
    lockfileVersion: '9.0'

    settings:
      autoInstallPeers: true

    importers:

      .:
        dependencies:
          '@scope/util':
            specifier: ^2.0.0
            version: 2.0.0
          react-dom:
            specifier: ^18.0.0
            version: 18.2.0(react@18.2.0)
          web:
            specifier: workspace:*
            version: link:packages/web

    packages:

      '@scope/util@2.0.0':
        resolution: {integrity: sha512-aaa}

      react-dom@18.2.0:
        resolution: {integrity: sha512-bbb}
        peerDependencies:
          react: ^18.2.0

      react@18.2.0:
        resolution: {integrity: sha512-ccc}

    snapshots:

      '@scope/util@2.0.0': {}

      react-dom@18.2.0(react@18.2.0):
        dependencies:
          react: 18.2.0

      react@18.2.0: {}
    """
)


def bump_v9(text: str, old: str, new: str) -> str:
    return text.replace(old, new)


V9_CASES = [
    (
        "scoped bump",
        V9_BASE.replace("'@scope/util@2.0.0'", "'@scope/util@2.1.0'").replace(
            "version: 2.0.0", "version: 2.1.0"
        ),
        {("npm", "@scope/util", "2.1.0")},
    ),
    (
        "bump with a peer suffix",
        V9_BASE.replace("react-dom@18.2.0", "react-dom@18.3.1"),
        {("npm", "react-dom", "18.3.1")},
    ),
    (
        "new package",
        V9_BASE.replace(
            "  react@18.2.0:\n    resolution: {integrity: sha512-ccc}\n",
            "  react@18.2.0:\n    resolution: {integrity: sha512-ccc}\n\n"
            "  scheduler@0.23.2:\n    resolution: {integrity: sha512-ddd}\n",
        ).replace("  react@18.2.0: {}\n", "  react@18.2.0: {}\n\n  scheduler@0.23.2: {}\n"),
        {("npm", "scheduler", "0.23.2")},
    ),
    (
        "removed package",
        V9_BASE.replace("  react@18.2.0:\n    resolution: {integrity: sha512-ccc}\n\n", "").replace(
            "  react@18.2.0: {}\n", ""
        ),
        set(),
    ),
    (
        "settings change only",
        V9_BASE.replace("autoInstallPeers: true", "autoInstallPeers: false"),
        set(),
    ),
    (
        "integrity change only",
        V9_BASE.replace("sha512-ccc", "sha512-zzz"),
        set(),
    ),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "head", "expected"), V9_CASES, ids=[c[0] for c in V9_CASES])
def test_v9(case: str, head: str, expected: set[object], whole: bool) -> None:
    deps = found("pnpm-lock.yaml", V9_BASE, head, whole=whole)
    assert keys(deps) == expected
    assert on_added_lines("pnpm-lock.yaml", V9_BASE, head, whole=whole)
    # One place per file: the "packages" entry, not its "snapshots" twin as well.
    assert len(deps) == len(expected)


def test_v9_finding_is_on_the_packages_key_line() -> None:
    head = V9_BASE.replace("react-dom@18.2.0", "react-dom@18.3.1")
    (dep,) = found("pnpm-lock.yaml", V9_BASE, head)
    assert head.splitlines()[(dep.line or 0) - 1] == "  react-dom@18.3.1:"


V6_BASE = dedent(
    """
    lockfileVersion: '6.0'

    dependencies:
      left-pad:
        specifier: 1.3.0
        version: 1.3.0

    packages:

      /left-pad@1.3.0:
        resolution: {integrity: sha512-aaa}
        dev: false

      /@types/react@18.2.0:
        resolution: {integrity: sha512-bbb}
        dev: true

      /styled@6.1.0(react@18.2.0):
        resolution: {integrity: sha512-ccc}
        dev: false
    """
)

V6_CASES = [
    ("bump", V6_BASE.replace("/left-pad@1.3.0", "/left-pad@1.3.1"), {("npm", "left-pad", "1.3.1")}),
    (
        "scoped bump",
        V6_BASE.replace("/@types/react@18.2.0", "/@types/react@18.3.3"),
        {("npm", "@types/react", "18.3.3")},
    ),
    (
        "peer-suffixed bump",
        V6_BASE.replace("/styled@6.1.0(react@18.2.0)", "/styled@6.1.8(react@18.2.0)"),
        {("npm", "styled", "6.1.8")},
    ),
    (
        "peer suffix change only",
        V6_BASE.replace("/styled@6.1.0(react@18.2.0)", "/styled@6.1.0(react@18.3.0)"),
        set(),
    ),
    (
        "git entry keyed by its host path",
        V6_BASE
        + "\n  github.com/user/repo/0123abc:\n"
        + "    resolution: {tarball: https://codeload.github.com/user/repo/tar.gz/0123abc}\n"
        + "    name: repo\n    version: 1.0.0\n    dev: false\n",
        {("npm", "repo", "https://codeload.github.com/user/repo/tar.gz/0123abc")},
    ),
    (
        "local directory entry",
        V6_BASE
        + "\n  file:packages/local:\n"
        + "    resolution: {directory: packages/local, type: directory}\n"
        + "    name: local\n    version: 0.0.1\n    dev: false\n",
        set(),
    ),
]


@pytest.mark.parametrize(("case", "head", "expected"), V6_CASES, ids=[c[0] for c in V6_CASES])
def test_v6_whole(case: str, head: str, expected: set[object]) -> None:
    assert keys(found("pnpm-lock.yaml", V6_BASE, head)) == expected
    assert on_added_lines("pnpm-lock.yaml", V6_BASE, head)


@pytest.mark.parametrize(
    ("case", "head", "expected"), V6_CASES[:4], ids=[c[0] for c in V6_CASES[:4]]
)
def test_v6_diff_only(case: str, head: str, expected: set[object]) -> None:
    assert keys(found("pnpm-lock.yaml", V6_BASE, head, whole=False)) == expected


def test_git_resolution_is_undatable() -> None:
    head = V9_BASE.replace(
        "\nsnapshots:",
        "  mine@https://codeload.github.com/u/mine/tar.gz/abc:\n"
        "    resolution: {tarball: https://codeload.github.com/u/mine/tar.gz/abc}\n"
        "    version: 1.0.0\n\n"
        "  other@git+https://github.com/u/other.git#def:\n"
        "    resolution: {type: git, repo: https://github.com/u/other.git, commit: def}\n"
        "    version: 2.0.0\n"
        "\nsnapshots:",
    )
    deps = found("pnpm-lock.yaml", V9_BASE, head)
    assert {(d.name, d.version, d.source) for d in deps} == {
        (
            "mine",
            "https://codeload.github.com/u/mine/tar.gz/abc",
            "installed from a tarball outside the registry",
        ),
        ("other", "https://github.com/u/other.git#def", "installed from a git repository"),
    }


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/left-pad@1.3.0", ("left-pad", "1.3.0")),
        ("left-pad@1.3.0", ("left-pad", "1.3.0")),
        ("/@scope/name@1.0.0(react@18.2.0)(typescript@5.0.0)", ("@scope/name", "1.0.0")),
        ("@scope/name@1.0.0", ("@scope/name", "1.0.0")),
        ("/left-pad/1.3.0", ("left-pad", "1.3.0")),
        ("/react-dom/17.0.2_react@17.0.2", ("react-dom", "17.0.2")),
        ("/@babel/core/7.0.0_supports-color@5.0.0", ("@babel/core", "7.0.0")),
        ("github.com/user/repo/0123abc", None),
        ("packages/web", None),
    ],
)
def test_key_styles_of_every_lockfile_generation(key: str, expected: object) -> None:
    assert pnpm_key(key) == expected


V5_BASE = dedent(
    """
    lockfileVersion: 5.4

    packages:

      /react-dom/17.0.2_react@17.0.2:
        resolution: {integrity: sha512-aaa}
        dev: false
    """
)


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_v5_bump(whole: bool) -> None:
    head = V5_BASE.replace("/react-dom/17.0.2_", "/react-dom/17.0.3_")
    assert keys(found("pnpm-lock.yaml", V5_BASE, head, whole=whole)) == {
        ("npm", "react-dom", "17.0.3")
    }


def test_flow_style_packages_are_parsed_whole() -> None:
    # Not how pnpm writes it, but valid YAML pnpm would read: it must not hide a package.
    base = "lockfileVersion: '9.0'\npackages: {left-pad@1.3.0: {resolution: {integrity: a}}}\n"
    head = base.replace("1.3.0", "1.3.1")
    assert keys(found("pnpm-lock.yaml", base, head)) == {("npm", "left-pad", "1.3.1")}


def test_invalid_yaml_is_noted() -> None:
    head = V9_BASE.replace("react@18.2.0:\n", "react@18.3.0: [\n", 1)
    result = introduced(changed_file("pnpm-lock.yaml", V9_BASE, head))
    assert any("could not read it as a pnpm-lock.yaml" in note for note in result.notes)
