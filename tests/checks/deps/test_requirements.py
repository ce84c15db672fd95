"""requirements*.txt / *.in: exact pins with extras, markers, hashes, comments and options."""

from __future__ import annotations

import pytest

from reviewbot.checks.deps import format_for
from tests.checks.deps.helpers import dedent, found, keys, on_added_lines

BASE = dedent(
    """
    # pinned for CI
    -r base.txt
    --index-url https://pypi.org/simple
    requests==2.31.0
    Django[argon2]==4.2.11 ; python_version >= "3.10"
    numpy>=1.26
    """
)

CASES = [
    ("bump", BASE.replace("2.31.0", "2.32.3"), {("pypi", "requests", "2.32.3")}),
    (
        "extras and markers, name canonicalised",
        BASE.replace("Django[argon2]==4.2.11", "Django[argon2]==4.2.13"),
        {("pypi", "django", "4.2.13")},
    ),
    (
        "new pins, odd spelling and normalised versions",
        BASE + "Typing_Extensions == 4.12.02\nzope.interface===6.4.post2\n",
        {("pypi", "typing-extensions", "4.12.2"), ("pypi", "zope-interface", "6.4.post2")},
    ),
    (
        "hashes on continuation lines",
        BASE + "attrs==23.2.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n",
        {("pypi", "attrs", "23.2.0")},
    ),
    ("inline comment", BASE + "idna==3.7  # security fix\n", {("pypi", "idna", "3.7")}),
    ("ranges and wildcards", BASE + "urllib3>=2.2\ncertifi==2024.*\nchardet~=5.2\n", set()),
    ("removed pin", BASE.replace("requests==2.31.0\n", ""), set()),
    (
        "comment and option changes",
        BASE.replace("# pinned for CI", "# pinned").replace("base.txt", "b.txt"),
        set(),
    ),
    ("commented-out pin", BASE + "# flask==3.0.3\n", set()),
    ("local paths", BASE + "-e .\n./libs/internal\n", set()),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(("case", "head", "expected"), CASES, ids=[c[0] for c in CASES])
def test_requirements(case: str, head: str, expected: set[object], whole: bool) -> None:
    assert keys(found("requirements.txt", BASE, head, whole=whole)) == expected
    assert on_added_lines("requirements.txt", BASE, head, whole=whole)


@pytest.mark.parametrize(
    ("line", "name", "source"),
    [
        (
            "mylib @ git+https://github.com/me/mylib@0123abc",
            "mylib",
            "git+https://github.com/me/mylib@0123abc",
        ),
        (
            "-e git+https://github.com/me/tool.git@v1#egg=tool",
            "tool",
            "git+https://github.com/me/tool.git@v1#egg=tool",
        ),
        (
            "https://example.com/wheels/fast-1.0-py3-none-any.whl",
            "fast",
            "https://example.com/wheels/fast-1.0-py3-none-any.whl",
        ),
        (
            "https://example.com/sdists/Slow_Lib-2.0.tar.gz#sha256=abc",
            "slow-lib",
            "https://example.com/sdists/Slow_Lib-2.0.tar.gz#sha256=abc",
        ),
        (
            "local @ file:///opt/wheels/local-1.0.tar.gz",
            "local",
            "file:///opt/wheels/local-1.0.tar.gz",
        ),
    ],
)
def test_url_requirements_are_undatable(line: str, name: str, source: str) -> None:
    (dep,) = found("requirements.txt", BASE, BASE + line + "\n")
    assert (dep.name, dep.version) == (name, source)
    assert dep.source and dep.source.startswith("installed from")


def test_the_version_line_of_a_continued_requirement_is_shown() -> None:
    head = BASE + "attrs \\\n    ==23.2.0 \\\n    --hash=sha256:aaaa\n"
    (dep,) = found("requirements.txt", BASE, head)
    assert head.splitlines()[(dep.line or 0) - 1].strip().startswith("==23.2.0")


@pytest.mark.parametrize(
    ("path", "handled"),
    [
        ("requirements.txt", True),
        ("requirements-dev.txt", True),
        ("requirements/prod.txt", True),
        ("deps/requirements.in", True),
        ("dev-requirements.txt", True),
        ("constraints.txt", True),
        ("notes.txt", False),
        ("requirements.md", False),
    ],
)
def test_which_files_are_requirements(path: str, handled: bool) -> None:
    fmt = format_for(path)
    assert (fmt is not None and fmt.label == "requirements file") is handled
