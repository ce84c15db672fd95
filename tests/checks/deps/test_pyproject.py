"""pyproject.toml: PEP 621, dependency groups, build requires, Poetry, uv sources."""

from __future__ import annotations

import pytest

from reviewbot.checks.deps import introduced
from tests.checks.deps.helpers import changed_file, dedent, found, keys, on_added_lines

BASE = dedent(
    """
    [build-system]
    requires = ["hatchling==1.24.2"]
    build-backend = "hatchling.build"

    [project]
    name = "app"
    version = "1.0.0"
    dependencies = [
        "httpx==0.27.0",
        "pydantic>=2.7",
    ]

    [project.optional-dependencies]
    server = ["uvicorn[standard]==0.29.0"]

    [dependency-groups]
    dev = ["pytest==8.2.0", {include-group = "lint"}]
    lint = ["ruff>=0.4"]

    [tool.poetry.dependencies]
    python = "^3.11"
    rich = "13.7.1"
    click = "=8.1.7"

    [tool.poetry.group.test.dependencies]
    hypothesis = {version = "==6.100.0", extras = ["cli"]}
    """
)

CASES = [
    ("PEP 621 bump", BASE.replace("httpx==0.27.0", "httpx==0.27.2"), {("pypi", "httpx", "0.27.2")}),
    (
        "optional dependency with extras",
        BASE.replace("uvicorn[standard]==0.29.0", "uvicorn[standard]==0.30.1"),
        {("pypi", "uvicorn", "0.30.1")},
    ),
    (
        "dependency group",
        BASE.replace("pytest==8.2.0", "pytest==8.2.2"),
        {("pypi", "pytest", "8.2.2")},
    ),
    (
        "build requirement",
        BASE.replace("hatchling==1.24.2", "hatchling==1.25.0"),
        {("pypi", "hatchling", "1.25.0")},
    ),
    (
        "Poetry =pin",
        BASE.replace('click = "=8.1.7"', 'click = "=8.1.8"'),
        {("pypi", "click", "8.1.8")},
    ),
    (
        "Poetry table ==pin",
        BASE.replace('"==6.100.0"', '"==6.103.1"'),
        {("pypi", "hypothesis", "6.103.1")},
    ),
    ("Poetry bare version means ^", BASE.replace('rich = "13.7.1"', 'rich = "13.8.0"'), set()),
    ("range bump", BASE.replace("pydantic>=2.7", "pydantic>=2.8"), set()),
    ("own version", BASE.replace('version = "1.0.0"', 'version = "1.1.0"'), set()),
    ("removed dependency", BASE.replace('    "httpx==0.27.0",\n', ""), set()),
    (
        "new PEP 621 dependency with marker",
        BASE.replace(
            '    "pydantic>=2.7",\n',
            '    "pydantic>=2.7",\n    "tomli==2.0.1; python_version < \'3.11\'",\n',
        ),
        {("pypi", "tomli", "2.0.1")},
    ),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "head", "expected"), CASES, ids=[c[0] for c in CASES])
def test_pyproject(case: str, head: str, expected: set[object], whole: bool) -> None:
    assert keys(found("pyproject.toml", BASE, head, whole=whole)) == expected
    assert on_added_lines("pyproject.toml", BASE, head, whole=whole)


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_git_and_url_dependencies_are_undatable(whole: bool) -> None:
    head = BASE.replace(
        '    "pydantic>=2.7",\n',
        '    "pydantic>=2.7",\n    "mylib @ git+https://github.com/me/mylib@0123abc",\n',
    ).replace(
        'click = "=8.1.7"\n',
        'click = "=8.1.7"\ntool = {git = "https://github.com/me/tool.git", rev = "abc"}\n'
        'local = {path = "../local", develop = true}\n',
    )
    deps = found("pyproject.toml", BASE, head, whole=whole)
    assert {(d.name, d.version) for d in deps} == {
        ("mylib", "git+https://github.com/me/mylib@0123abc"),
        ("tool", "https://github.com/me/tool.git#abc"),
    }
    assert all(d.source for d in deps)


def test_uv_sources_redirect_a_pinned_name() -> None:
    base = dedent(
        """
        [project]
        dependencies = ["sdk==1.0.0", "shared==0.1.0"]
        """
    )
    head = base.replace("sdk==1.0.0", "sdk==1.1.0").replace(
        "shared==0.1.0", "shared==0.2.0"
    ) + dedent(
        """

        [tool.uv.sources]
        sdk = { git = "https://github.com/org/sdk", tag = "v1.1.0" }
        shared = { workspace = true }
        """
    )
    deps = found("pyproject.toml", base, head)
    assert {(d.name, d.version, d.source is not None) for d in deps} == {
        ("sdk", "https://github.com/org/sdk#v1.1.0", True)
    }
    # Shown where the name is pinned and where its source is set.
    lines = head.splitlines()
    assert deps and all(d.line and "sdk" in lines[(d.line or 0) - 1] for d in deps)


def test_invalid_toml_is_noted_and_the_diff_still_read() -> None:
    head = BASE.replace("httpx==0.27.0", "httpx==0.27.2").replace("[project]", "[project")
    result = introduced(changed_file("pyproject.toml", BASE, head))
    assert any("could not read it as a pyproject.toml" in note for note in result.notes)
    assert ("pypi", "httpx", "0.27.2") in {dep.key for dep in result.deps}
