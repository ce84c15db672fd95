"""Inline ``name==X.Y`` pins in any file, and guideline-mapped keys in JSON/YAML/TOML files."""

from __future__ import annotations

import pytest

from reviewbot.checks.deps import introduced
from reviewbot.models import PinMapping
from tests.checks.deps.helpers import changed_file, dedent, found, keys

INLINE_FOUND = [
    (
        "Dockerfile",
        "RUN pip install --no-cache-dir openhands-ai==0.9.1 rich==13.7.1",
        {("openhands-ai", "0.9.1"), ("rich", "13.7.1")},
    ),
    (
        "scripts/run.sh",
        "uvx --from openhands-agent-server==1.2.3 agent-server",
        {("openhands-agent-server", "1.2.3")},
    ),
    (
        ".github/workflows/ci.yml",
        "      - run: pip install 'ruff[format]==0.5.0'",
        {("ruff", "0.5.0")},
    ),
    ("docs/setup.md", "Install with `pip install Foo_Bar==2.0.0rc1`.", {("foo-bar", "2.0.0rc1")}),
    (
        "tests/test_cli.py",
        'assert cmd == ["uvx", "--from", "openhands-agent-server==1.2.3"]',
        {("openhands-agent-server", "1.2.3")},
    ),
    ("src/setup.py", "    # pin: pip install httpx==0.27.2", {("httpx", "0.27.2")}),
    ("Makefile", "\tpip install 'pkg==1.0.0' 'other==2.1'", {("pkg", "1.0.0"), ("other", "2.1")}),
]

INLINE_IGNORED = [
    ("src/app.py", "if version==1.2:"),
    ("src/app.py", "ok = self.version==1.2.3"),
    ("src/app.ts", "if (x===1.5) {}"),
    ("notes.txt", "counts a==1 and b == 1.2.3 with spaces"),
    ("Dockerfile", "RUN conda install python==3.11.4"),
    ("ci.yml", "url: https://host/pkg==1.2.3"),
    ("README.md", "compare `$VERSION==1.2.3` in shell"),
    ("README.md", "version pinned to {{ version }}: pkg=={{ version }}"),
]


@pytest.mark.parametrize(
    ("path", "line", "expected"), INLINE_FOUND, ids=[c[0] for c in INLINE_FOUND]
)
def test_inline_pins_are_found(path: str, line: str, expected: set[tuple[str, str]]) -> None:
    base = "first line\n"
    head = base + line + "\n"
    deps = found(path, base, head, whole=False)
    assert {(d.name, d.version) for d in deps} == expected
    assert all(d.ecosystem == "pypi" and d.line == 2 for d in deps)


@pytest.mark.parametrize(
    ("path", "line"), INLINE_IGNORED, ids=[f"{c[0]}: {c[1]}" for c in INLINE_IGNORED]
)
def test_things_that_are_not_pins(path: str, line: str) -> None:
    assert found(path, "first line\n", f"first line\n{line}\n", whole=False) == []


@pytest.mark.parametrize("whole", [True, False], ids=["base known", "diff-only"])
def test_a_pin_already_in_the_file_is_not_introduced(whole: bool) -> None:
    base = "FROM python:3.12\nRUN pip install rich==13.7.1 httpx==0.27.0\n"
    head = "FROM python:3.12\nRUN pip install --no-cache-dir rich==13.7.1 httpx==0.27.2\n"
    assert keys(found("Dockerfile", base, head, whole=whole)) == {("pypi", "httpx", "0.27.2")}


def test_a_pin_moved_within_a_file_is_not_new_when_the_base_is_known() -> None:
    base = "RUN pip install rich==13.7.1\n" + "# filler\n" * 20 + "RUN echo done\n"
    head = "RUN echo start\n" + "# filler\n" * 20 + "RUN pip install rich==13.7.1\n"
    assert found("Dockerfile", base, head, whole=True) == []


def test_removed_pin_is_not_a_finding() -> None:
    assert found("Dockerfile", "RUN pip install rich==13.7.1\n", "RUN pip install rich\n") == []


JSON_BASE = dedent(
    """
    {
      "name": "frontend",
      "versions": {
        "agentServer": "1.2.3",
        "ui": "4.0.0"
      }
    }
    """
)
AGENT = PinMapping("config/versions.json", "versions.agentServer", "pypi:OpenHands_Agent_Server")


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_mapped_json_pin_changed(whole: bool) -> None:
    head = JSON_BASE.replace('"1.2.3"', '"1.3.0"')
    deps = found("config/versions.json", JSON_BASE, head, whole=whole, pins=(AGENT,))
    assert keys(deps) == {("pypi", "openhands-agent-server", "1.3.0")}
    (dep,) = deps
    assert head.splitlines()[(dep.line or 0) - 1].strip() == '"agentServer": "1.3.0",'


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_mapped_pin_unchanged_or_other_key_changed(whole: bool) -> None:
    head = JSON_BASE.replace('"4.0.0"', '"4.1.0"')
    assert found("config/versions.json", JSON_BASE, head, whole=whole, pins=(AGENT,)) == []


def test_mapped_pin_in_a_new_file_and_glob_paths() -> None:
    mapping = PinMapping("deploy/*.yaml", "images.agent.tag", "pypi:openhands-agent-server")
    head = dedent(
        """
        images:
          agent:
            tag: "1.10"
          ui:
            tag: "2.0.0"
        """
    )
    deps = found("deploy/prod.yaml", None, head, pins=(mapping,))
    assert keys(deps) == {("pypi", "openhands-agent-server", "1.10")}
    assert deps[0].line == 3


def test_mapped_yaml_number_is_read_as_written() -> None:
    mapping = PinMapping("versions.yml", "agent", "pypi:openhands-agent-server")
    deps = found("versions.yml", "agent: 1.9\n", "agent: 1.10\n", pins=(mapping,))
    assert keys(deps) == {("pypi", "openhands-agent-server", "1.10")}


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "diff-only"])
def test_mapped_toml_pin(whole: bool) -> None:
    mapping = PinMapping("pins.toml", "tool.versions.web", "npm:@openhands/ui")
    base = '[tool.versions]\nweb = "1.0.0"\napi = "2.0.0"\n\n[other]\nweb = "9.9.9"\n'
    head = base.replace('web = "1.0.0"', 'web = "1.1.0"').replace('"9.9.9"', '"9.9.10"')
    deps = found("pins.toml", base, head, whole=whole, pins=(mapping,))
    assert keys(deps) == {("npm", "@openhands/ui", "1.1.0")}
    assert deps[0].line == 2


def test_mapped_value_that_is_no_version_is_undatable() -> None:
    head = JSON_BASE.replace('"1.2.3"', '"main"')
    (dep,) = found("config/versions.json", JSON_BASE, head, pins=(AGENT,))
    assert (dep.version, dep.source) == (
        "main",
        "the value of versions.agentServer in config/versions.json is not an exact version",
    )


def test_mapping_to_an_unknown_ecosystem_is_noted() -> None:
    mapping = PinMapping("config/versions.json", "versions.ui", "cargo:ui")
    head = JSON_BASE.replace('"4.0.0"', '"4.1.0"')
    result = introduced(changed_file("config/versions.json", JSON_BASE, head), (mapping,))
    assert result.deps == ()
    assert result.notes and "cargo:ui" in result.notes[0]


def test_inline_pins_in_package_json_scripts() -> None:
    base = '{\n  "scripts": {\n    "setup": "pip install -r requirements.txt"\n  }\n}\n'
    head = base.replace("-r requirements.txt", "openhands-ai==0.9.1")
    assert keys(found("package.json", base, head)) == {("pypi", "openhands-ai", "0.9.1")}
