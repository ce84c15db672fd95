"""The deployment files (App manifest, compose, env example, Action) agree with the code."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reviewbot.events import router
from reviewbot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# GitHub sends these to every App without a subscription (and answers ping on creation).
ALWAYS_SENT = {"ping", "installation", "installation_repositories"}
EXPECTED_PERMISSIONS = {
    "pull_requests": "write",
    "contents": "read",
    "issues": "write",
    "checks": "write",
    "actions": "read",
    "metadata": "read",
}
QUEUE_ENV = {"REVIEWBOT_QUEUE_URL": "redis://redis:6379/0", "REVIEWBOT_RUN_WORKER": "0"}


def load_yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def env_names() -> list[str]:
    """Every Settings field's environment variable."""
    return [
        "GITHUB_TOKEN" if name == "github_token" else "REVIEWBOT_" + name.upper()
        for name in Settings.model_fields
    ]


def routed_events() -> set[str]:
    return {event for event, _action in router._handlers} - ALWAYS_SENT


def env_mapping(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's ``environment`` as a dict, from either of its two spellings."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


# ---- app.yml -------------------------------------------------------------------------------


def test_manifest_permissions_are_exactly_what_the_app_uses() -> None:
    assert load_yaml("app.yml")["default_permissions"] == EXPECTED_PERMISSIONS


def test_manifest_subscribes_to_every_routed_event() -> None:
    events = load_yaml("app.yml")["default_events"]
    assert routed_events(), "the router registers no events: the check would prove nothing"
    assert routed_events() <= set(events)
    # Every subscription is also handled: an unrouted event would only cost deliveries.
    assert set(events) <= routed_events()


def test_manifest_webhook_and_visibility() -> None:
    manifest = load_yaml("app.yml")
    assert manifest["hook_attributes"]["url"].endswith("/webhook")
    assert manifest["hook_attributes"]["active"] is True
    assert manifest["public"] is False
    for key in ("name", "url", "redirect_url", "description"):
        assert isinstance(manifest[key], str) and manifest[key].strip(), key


# ---- docker-compose.yml --------------------------------------------------------------------


def test_compose_services_share_a_redis_queue() -> None:
    compose = load_yaml("docker-compose.yml")
    services = compose["services"]
    assert {"redis", "server", "worker"} <= set(services)
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("server", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert service["env_file"] in (".env", [".env"])
        assert env_mapping(service).items() >= QUEUE_ENV.items(), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["server"]["command"][:2] == ["reviewbot", "serve"]
    assert "8000:8000" in services["server"]["ports"]
    assert services["worker"]["command"] == ["reviewbot", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    redis_volume = services["redis"]["volumes"][0].split(":")[0]
    assert redis_volume in compose["volumes"]


def test_compose_queue_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    for service in ("server", "worker"):
        for key, value in env_mapping(load_yaml("docker-compose.yml")["services"][service]).items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.queue_url == QUEUE_ENV["REVIEWBOT_QUEUE_URL"]
        assert settings.run_worker is False


# ---- .env.example and README ---------------------------------------------------------------


@pytest.mark.parametrize("name", env_names())
def test_env_example_lists_every_setting(name: str) -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert re.search(rf"^(# )?{name}=", text, re.MULTILINE), name


@pytest.mark.parametrize("name", env_names())
def test_readme_documents_every_setting(name: str) -> None:
    assert re.search(rf"\b{name}\b", (ROOT / "README.md").read_text(encoding="utf-8")), name


def test_env_example_as_is_builds_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Copied unchanged to .env, the example must not break the service's configuration."""
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assigned = 0
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value)
            assigned += 1
    assert assigned, "the example sets nothing"
    settings = Settings()
    assert settings.secret_values() == []  # no secret is shipped in the example


# ---- action.yml ----------------------------------------------------------------------------


def test_action_is_composite_and_posts_a_review() -> None:
    action = load_yaml("action.yml")
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"github-token", "pr", "python-version", "fail-on-critical"}
    assert action["inputs"]["fail-on-critical"]["default"] == "false"
    scripts = [step.get("run", "") for step in action["runs"]["steps"]]
    review = [script for script in scripts if "reviewbot review" in script]
    assert review, "no step runs `reviewbot review`"
    assert any("--pr" in script and "--post" in script for script in review)
    assert all("shell" in step for step in action["runs"]["steps"] if "run" in step)


def review_script() -> str:
    steps = load_yaml("action.yml")["runs"]["steps"]
    (script,) = [step["run"] for step in steps if "reviewbot review" in step.get("run", "")]
    assert "${{" not in script, "inputs must reach the script through env, not interpolation"
    return str(script)


@pytest.mark.parametrize(
    ("review_exit", "fail_on_critical", "step_exit"),
    [
        (0, "false", 0),
        (0, "true", 0),
        (1, "false", 0),
        (1, "true", 1),
        (2, "false", 2),
        (2, "true", 2),
    ],
)
def test_action_step_exit_code(
    tmp_path: Path, review_exit: int, fail_on_critical: str, step_exit: int
) -> None:
    """The review step run as GitHub runs it (bash -e), against a stand-in `reviewbot`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "args"
    fake = bin_dir / "reviewbot"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\nexit {review_exit}\n')
    fake.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(review_script())
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REPOSITORY": "octo/repo",
        "PR_NUMBER": "42",
        "FAIL_ON_CRITICAL": fail_on_critical,
    }
    bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    result = subprocess.run(bash, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == step_exit, result.stdout + result.stderr
    assert args_file.read_text().split("\n")[:4] == ["review", "--pr", "octo/repo#42", "--post"]


def test_action_step_refuses_a_missing_pr_number(tmp_path: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text(review_script())
    env = {"PATH": os.environ["PATH"], "GITHUB_REPOSITORY": "o/r", "PR_NUMBER": ""}
    result = subprocess.run(
        ["bash", "-e", str(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "pr" in result.stdout
