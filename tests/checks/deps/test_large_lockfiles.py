"""50,000-line lockfiles with 500 bumps: every bump found, on its line, without a full parse."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from reviewbot.checks.deps import introduced, pnpm, python_locks, yarn
from tests.checks.deps.helpers import changed_file

PACKAGES = 5000  # about 10 lines each
BUMPED = range(0, PACKAGES, 10)  # 500 bumps


def version(index: int, bump: bool) -> str:
    return f"1.{index}.{1 if bump and index in BUMPED else 0}"


def uv_lock(bump: bool) -> str:
    parts = ['version = 1\nrequires-python = ">=3.11"\n']
    for i in range(PACKAGES):
        v = version(i, bump)
        parts.append(
            f'\n[[package]]\nname = "pkg{i}"\nversion = "{v}"\n'
            'source = { registry = "https://pypi.org/simple" }\n'
            f'dependencies = [{{ name = "dep{i}" }}]\n'
            f'sdist = {{ url = "https://files.example/pkg{i}-{v}.tar.gz", hash = "sha256:aa" }}\n'
            f'wheels = [\n    {{ url = "https://f.example/{i}-{v}.whl", hash = "sha256:bb" }},\n]\n'
        )
    return "".join(parts)


def pnpm_lock(bump: bool) -> str:
    parts = ["lockfileVersion: '9.0'\n\nimporters:\n\n  .:\n    dependencies:\n"]
    for i in range(PACKAGES):
        parts.append(
            f"      pkg{i}:\n        specifier: ^1.{i}.0\n        version: {version(i, bump)}\n"
        )
    parts.append("\npackages:\n\n")
    for i in range(PACKAGES):
        parts.append(f"  pkg{i}@{version(i, bump)}:\n    resolution: {{integrity: sha512-{i}}}\n\n")
    parts.append("snapshots:\n\n")
    for i in range(PACKAGES):
        parts.append(f"  pkg{i}@{version(i, bump)}:\n    dependencies:\n      dep{i}: 1.0.0\n\n")
    return "".join(parts)


def package_lock(bump: bool) -> str:
    packages: dict[str, object] = {"": {"name": "app"}}
    for i in range(PACKAGES):
        v = version(i, bump)
        packages[f"node_modules/pkg{i}"] = {
            "version": v,
            "resolved": f"https://registry.npmjs.org/pkg{i}/-/pkg{i}-{v}.tgz",
            "integrity": f"sha512-{i}",
            "dependencies": {f"dep{i}": "^1.0.0"},
            "engines": {"node": ">=18"},
        }
    return json.dumps({"name": "app", "lockfileVersion": 3, "packages": packages}, indent=2)


def yarn_classic(bump: bool) -> str:
    parts = ["# yarn lockfile v1\n\n"]
    for i in range(PACKAGES):
        v = version(i, bump)
        parts.append(
            f'pkg{i}@^1.{i}.0:\n  version "{v}"\n'
            f'  resolved "https://registry.yarnpkg.com/pkg{i}/-/pkg{i}-{v}.tgz#abc"\n'
            f'  integrity sha512-{i}\n  dependencies:\n    dep{i} "^1.0.0"\n'
            '    other "^2.0.0"\n    more "^3.0.0"\n\n'
        )
    return "".join(parts)


def yarn_berry(bump: bool) -> str:
    parts = ["__metadata:\n  version: 8\n  cacheKey: 10c0\n\n"]
    for i in range(PACKAGES):
        v = version(i, bump)
        parts.append(
            f'"pkg{i}@npm:^1.{i}.0":\n  version: {v}\n  resolution: "pkg{i}@npm:{v}"\n'
            f"  dependencies:\n    dep{i}: ^1.0.0\n  checksum: 10c0/{i}\n"
            "  languageName: node\n  linkType: hard\n\n"
        )
    return "".join(parts)


CASES: list[tuple[str, Callable[[bool], str], str]] = [
    ("uv.lock", uv_lock, "pypi"),
    ("poetry.lock", uv_lock, "pypi"),
    ("pnpm-lock.yaml", pnpm_lock, "npm"),
    ("package-lock.json", package_lock, "npm"),
    ("yarn.lock", yarn_classic, "npm"),
    ("yarn.lock", yarn_berry, "npm"),
]


def _no_full_parse(*args: object) -> object:
    raise AssertionError("a large lockfile was parsed whole instead of entry by entry")


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
@pytest.mark.parametrize(
    ("path", "make", "ecosystem"), CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES]
)
def test_500_bumps_in_a_50000_line_lockfile(
    path: str,
    make: Callable[[bool], str],
    ecosystem: str,
    whole: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The slow whole-file YAML/TOML parse is only for files that cannot be cut into entries.
    monkeypatch.setattr(pnpm, "_pnpm_full", _no_full_parse)
    monkeypatch.setattr(yarn, "_berry_full", _no_full_parse)
    monkeypatch.setattr(python_locks, "_lock_full", _no_full_parse)
    base, head = make(False), make(True)
    assert head.count("\n") >= 45_000
    changed = changed_file(path, base, head, whole=whole)
    started = time.process_time()
    result = introduced(changed)
    elapsed = time.process_time() - started
    expected = {(ecosystem, f"pkg{i}", version(i, True)) for i in BUMPED}
    assert {dep.key for dep in result.deps} == expected
    assert len(result.deps) == len(BUMPED)
    assert all(dep.line in changed.added for dep in result.deps)
    assert result.notes == ()
    # Measured around 0.3 s; the bound leaves room for slow CI machines.
    assert elapsed < 1.5
