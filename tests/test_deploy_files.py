"""The deployment files (App manifest, compose, env example, Action, docs) agree with the code."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reviewbot import metrics
from reviewbot.cli import build_parser, parse_pr
from reviewbot.events import router
from reviewbot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# GitHub sends these to every App without a subscription (and ping once, on creation).
ALWAYS_SENT = {"ping", "installation", "installation_repositories"}
EXPECTED_PERMISSIONS = {
    "pull_requests": "write",
    "contents": "read",
    "issues": "write",
    "checks": "write",
    "actions": "read",
    "metadata": "read",
}
# GitHub delivers an event to an App only with the permission it belongs to.
EVENT_PERMISSION = {
    "pull_request": "pull_requests",
    "issue_comment": "issues",
    "workflow_run": "actions",
}
QUEUE_ENV = {"REVIEWBOT_QUEUE_URL": "redis://redis:6379/0", "REVIEWBOT_RUN_WORKER": "0"}
_ASSIGNMENT = re.compile(r"^(?P<comment># ?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def load_yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def env_name(field: str) -> str:
    return "GITHUB_TOKEN" if field == "github_token" else "REVIEWBOT_" + field.upper()


ENV_TO_FIELD = {env_name(field): field for field in Settings.model_fields}


def routed_events() -> set[str]:
    return {event for event, _action in router._handlers} - ALWAYS_SENT


def env_mapping(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's ``environment`` as a dict, from either of its two spellings."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the host; a home of our own, so ``~`` and the data dir are known."""
    for name in ENV_TO_FIELD:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def field_from_env(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> Any:
    """The field ``name`` sets, read by Settings from the environment as the service reads it."""
    with monkeypatch.context() as patch:
        patch.setenv(name, value)
        return getattr(Settings(), ENV_TO_FIELD[name])


# ---- app.yml -------------------------------------------------------------------------------


def test_manifest_permissions_are_exactly_what_the_app_uses() -> None:
    assert load_yaml("app.yml")["default_permissions"] == EXPECTED_PERMISSIONS


def test_manifest_subscribes_to_exactly_the_routed_events() -> None:
    events = load_yaml("app.yml")["default_events"]
    assert routed_events(), "the router registers no events: the check would prove nothing"
    assert routed_events() <= set(events)
    # Every subscription is also handled: an unrouted event would only cost deliveries.
    assert set(events) <= routed_events()
    assert not set(events) & ALWAYS_SENT


def test_every_subscribed_event_has_its_permission() -> None:
    manifest = load_yaml("app.yml")
    for event in manifest["default_events"]:
        assert EVENT_PERMISSION[event] in manifest["default_permissions"], event


def test_manifest_webhook_and_visibility() -> None:
    manifest = load_yaml("app.yml")
    hook = manifest["hook_attributes"]["url"]
    assert hook.startswith("https://") and hook.endswith("/webhook")
    assert manifest["hook_attributes"]["active"] is True
    assert manifest["public"] is False
    for key in ("name", "url", "redirect_url", "description"):
        assert isinstance(manifest[key], str) and manifest[key].strip(), key
    # Every placeholder URL is visibly one, so nobody registers example.com by accident.
    lines = (ROOT / "app.yml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "example.com" in line:
            assert "PLACEHOLDER" in line or "PLACEHOLDER" in lines[number - 1], line


def test_deploy_doc_permission_table_matches_the_manifest() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z ]+) \| (read|write) \|", doc, re.MULTILINE)
    assert {name.replace(" ", "_"): access for name, access in rows} == EXPECTED_PERMISSIONS


# ---- docker-compose.yml --------------------------------------------------------------------


def test_compose_services_share_a_redis_queue() -> None:
    compose = load_yaml("docker-compose.yml")
    services = compose["services"]
    assert {"redis", "server", "worker"} <= set(services)
    for name in ("server", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert (ROOT / "Dockerfile").is_file()
        assert service["env_file"] in (".env", [".env"])
        assert env_mapping(service).items() >= QUEUE_ENV.items(), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["server"]["command"][:2] == ["reviewbot", "serve"]
    assert services["worker"]["command"] == ["reviewbot", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2


def test_compose_server_listens_where_the_image_and_port_say() -> None:
    server = load_yaml("docker-compose.yml")["services"]["server"]
    exposed = re.findall(r"^EXPOSE (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed, "the Dockerfile exposes no port"
    command = server["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from outside
    port = command[command.index("--port") + 1]
    assert port in exposed
    assert any(str(mapping).endswith(f":{port}") for mapping in server["ports"])


def test_compose_redis_is_durable_and_checked() -> None:
    compose = load_yaml("docker-compose.yml")
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    # Without these Redis may lose or evict deliveries GitHub was told were accepted.
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    volume, _, target = redis["volumes"][0].partition(":")
    assert volume in compose["volumes"] and target == "/data"


def test_compose_worker_health_check_probes_its_metrics_port() -> None:
    worker = load_yaml("docker-compose.yml")["services"]["worker"]
    port = env_mapping(worker)["REVIEWBOT_WORKER_METRICS_PORT"]
    # The image's default check probes the server's :8000, which a worker does not serve.
    assert f"127.0.0.1:{port}/" in " ".join(worker["healthcheck"]["test"])


def test_compose_gives_running_jobs_their_shutdown_grace() -> None:
    from reviewbot.app import SHUTDOWN_GRACE_SECONDS

    for name in ("server", "worker"):
        grace = load_yaml("docker-compose.yml")["services"][name]["stop_grace_period"]
        match = re.fullmatch(r"(\d+)s", grace)
        assert match, grace
        assert int(match[1]) > SHUTDOWN_GRACE_SECONDS, name


def test_compose_env_makes_a_queue_only_server_and_workers(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    from reviewbot.app import runs_worker_in_server

    for service in ("server", "worker"):
        with monkeypatch.context() as patch:
            for key, value in env_mapping(
                load_yaml("docker-compose.yml")["services"][service]
            ).items():
                patch.setenv(key, value)
            settings = Settings()
        assert settings.queue_url == QUEUE_ENV["REVIEWBOT_QUEUE_URL"]
        assert runs_worker_in_server(settings) is False, service


# ---- .env.example --------------------------------------------------------------------------


def env_example() -> list[tuple[bool, str, str, str]]:
    """(commented, name, value, the comment block above) for each assignment line."""
    entries = []
    block: list[str] = []
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            value = match["value"]
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries.append((match["comment"] is not None, match["name"], value, " ".join(block)))
        elif line.startswith("#"):
            block.append(line)
            continue
        block = []
    return entries


def test_env_example_lists_every_setting_once_and_nothing_else() -> None:
    names = [name for _commented, name, _value, _block in env_example()]
    assert sorted(names) == sorted(ENV_TO_FIELD)


def test_env_example_shows_true_defaults(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    """A commented value is the default, unless its comment calls it an example."""
    defaults = Settings()
    examples = 0
    for commented, name, value, block in env_example():
        if not commented:
            continue
        # Every shown value is accepted (an example must work when uncommented).
        shown = field_from_env(monkeypatch, name, value)
        if "Default: unset" in block:
            assert getattr(defaults, ENV_TO_FIELD[name]) is None, name
            assert shown is not None, f"{name}: an example should show a value"
            examples += 1
        else:
            assert shown == getattr(defaults, ENV_TO_FIELD[name]), name
    assert examples, "no example values: the split above is not being tested"


def test_env_example_as_is_builds_settings(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    """Copied unchanged to .env, the example must not break the configuration."""
    active = [(name, value) for commented, name, value, _block in env_example() if not commented]
    assert active, "the example sets nothing"
    for name, value in active:
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.secret_values() == []  # no secret is shipped in the example
    assert settings.webhook_secret is None  # ... and the service asks for one
    assert any("REVIEWBOT_WEBHOOK_SECRET" in problem for problem in settings.service_problems())


# ---- README configuration table ------------------------------------------------------------


def readme_table() -> list[tuple[list[str], list[str]]]:
    """(variables, literal defaults) per row of the README's Configuration table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Configuration", 1)[1]
    rows: list[tuple[list[str], list[str]]] = []
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = [name.strip().strip("`") for name in cells[0].split(" / ")]
        defaults = [value.strip() for value in cells[1].split(" / ")]
        rows.append((names, defaults))
    assert rows, "no Configuration table in README.md"
    return rows


def test_readme_configuration_table_lists_every_setting() -> None:
    listed = [name for names, _defaults in readme_table() for name in names]
    assert sorted(listed) == sorted(ENV_TO_FIELD)


def test_readme_configuration_defaults_are_true(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    defaults = Settings()
    checked = 0
    for names, values in readme_table():
        literal = [re.fullmatch(r"`([^`]*)`", value) for value in values]
        if len(names) != len(values) or not all(literal):
            continue  # "—", prose ("the App's slug[bot]")
        for name, match in zip(names, literal, strict=True):
            assert match is not None
            assert field_from_env(monkeypatch, name, match[1]) == getattr(
                defaults, ENV_TO_FIELD[name]
            ), name
            checked += 1
    assert checked >= len(ENV_TO_FIELD) // 2, "most defaults should be literal"


# ---- action.yml ----------------------------------------------------------------------------


def action() -> dict[str, Any]:
    return load_yaml("action.yml")


def review_step() -> dict[str, Any]:
    steps = [s for s in action()["runs"]["steps"] if "reviewbot review" in s.get("run", "")]
    assert len(steps) == 1, "exactly one step should run `reviewbot review`"
    step: dict[str, Any] = steps[0]
    assert "${{" not in step["run"], "inputs must reach the script through env, not interpolation"
    return step


def test_action_is_composite_with_its_inputs() -> None:
    spec = action()
    assert spec["runs"]["using"] == "composite"
    inputs = spec["inputs"]
    assert inputs["github-token"]["default"] == "${{ github.token }}"
    assert inputs["pr"]["default"] == "${{ github.event.pull_request.number }}"
    assert inputs["python-version"]["default"] == "3.11"
    assert inputs["post"]["default"] == "true"
    assert inputs["fail-on-critical"]["default"] == "false"
    assert all(step.get("shell") == "bash" for step in spec["runs"]["steps"] if "run" in step)
    setup = spec["runs"]["steps"][0]
    assert setup["uses"].startswith("actions/setup-python@")
    assert setup["with"]["python-version"] == "${{ inputs.python-version }}"


def test_action_installs_reviewbot_from_its_own_checkout() -> None:
    (install,) = [s["run"] for s in action()["runs"]["steps"] if "pip install" in s.get("run", "")]
    words = shlex.split(install)
    # Editable: templates/ and skills/ sit beside the package, and a regular install
    # leaves them behind (the review then cannot be rendered).
    assert "--editable" in words or "-e" in words
    assert words[-1] in ("$GITHUB_ACTION_PATH", "${{ github.action_path }}")


def test_action_review_step_gets_token_and_api_url() -> None:
    env = review_step()["env"]
    assert env["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert env["REVIEWBOT_GITHUB_API_URL"] == "${{ github.api_url }}"


def test_deploy_doc_lists_the_action_inputs_with_their_defaults() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").split("## CI mode", 1)[1]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `([^`]*)` \|", doc, re.MULTILINE))
    assert rows == {name: spec["default"] for name, spec in action()["inputs"].items()}


def run_review_step(
    tmp_path: Path,
    *,
    review_exit: int = 0,
    stderr: str = "",
    **inputs: str,
) -> tuple[subprocess.CompletedProcess[str], list[str] | None, dict[str, str]]:
    """Run the review step as a runner does (bash -e, the step's env), with a stand-in
    ``reviewbot`` that records its arguments; returns the result, the arguments (None if it
    was not called) and the files the step wrote (summary, outputs, what the fake saw)."""
    values = {
        "github-token": "ghs_token-from-input",
        "pr": "42",
        "post": "true",
        "fail-on-critical": "false",
        **inputs,
    }
    github = {"api_url": "https://ghe.example/api/v3"}

    def evaluate(expression: str) -> str:
        match = re.fullmatch(r"\$\{\{\s*(inputs|github)\.([\w-]+)\s*\}\}", expression)
        assert match, f"unexpected expression {expression!r}"
        return (values if match[1] == "inputs" else github)[match[2]]

    step = review_step()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "record"
    fake = bin_dir / "reviewbot"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{record}.args"\n'
        f'printf "%s\\n%s\\n" "$GITHUB_TOKEN" "$REVIEWBOT_GITHUB_API_URL" > "{record}.env"\n'
        'echo "## the review"\n'
        f"printf %s {shlex.quote(stderr)} >&2\n"
        f"exit {review_exit}\n"
    )
    fake.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REPOSITORY": "octo/repo",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        **{key: evaluate(str(value)) for key, value in step["env"].items()},
    }
    bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    result = subprocess.run(bash, env=env, capture_output=True, text=True, timeout=30)
    args_file = Path(f"{record}.args")
    args = args_file.read_text().splitlines() if args_file.exists() else None
    files = {
        name: path.read_text() if path.exists() else ""
        for name, path in (("summary", summary), ("output", output), ("env", Path(f"{record}.env")))
    }
    return result, args, files


@pytest.mark.parametrize(
    ("review_exit", "fail_on_critical", "step_exit"),
    [
        (0, "false", 0),
        (0, "true", 0),
        (1, "false", 0),
        (1, "true", 1),
        (1, "yes", 0),  # only "true" turns critical findings into a failure
        (2, "false", 2),
        (2, "true", 2),
    ],
)
def test_action_step_exit_code(
    tmp_path: Path, review_exit: int, fail_on_critical: str, step_exit: int
) -> None:
    result, args, files = run_review_step(
        tmp_path, review_exit=review_exit, **{"fail-on-critical": fail_on_critical}
    )
    assert result.returncode == step_exit, result.stdout + result.stderr
    assert args == ["review", "--pr", "octo/repo#42", "--post"]
    assert files["env"].splitlines() == ["ghs_token-from-input", "https://ghe.example/api/v3"]
    assert "## the review" in result.stdout and "## the review" in files["summary"]
    assert f"exit-code={review_exit}" in files["output"].splitlines()
    if review_exit == 1:
        assert "critical" in result.stdout


def test_action_arguments_are_accepted_by_the_cli(tmp_path: Path) -> None:
    _result, args, _files = run_review_step(tmp_path)
    assert args is not None
    parsed = build_parser().parse_args(args)
    assert parsed.command == "review" and parsed.post is True
    assert parse_pr(parsed.pr) == ("octo", "repo", 42)


def test_action_post_false_only_prints(tmp_path: Path) -> None:
    result, args, _files = run_review_step(tmp_path, post="false")
    assert result.returncode == 0
    assert args == ["review", "--pr", "octo/repo#42"]


def test_action_treats_a_crash_as_a_failure_not_a_verdict(tmp_path: Path) -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py"\nKeyError: 1\n'
    result, _args, files = run_review_step(tmp_path, review_exit=1, stderr=traceback)
    assert result.returncode != 0  # although fail-on-critical is "false"
    assert "crashed" in result.stdout
    assert "KeyError" in result.stderr  # the traceback still reaches the log
    assert "exit-code" not in files["output"]


@pytest.mark.parametrize("pr", ["", "12; rm -rf /", "$(id)", "1 2", "#3"])
def test_action_step_refuses_a_missing_or_odd_pr_number(tmp_path: Path, pr: str) -> None:
    result, args, _files = run_review_step(tmp_path, pr=pr)
    assert result.returncode == 2
    assert args is None, "reviewbot must not run"
    assert "::error::" in result.stdout and "pr" in result.stdout


# ---- docs/deploy.md ------------------------------------------------------------------------


def test_deploy_doc_names_only_real_metrics() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(reviewbot_[a-z_]+)`", doc))
    exported = set(re.findall(r"^# TYPE (\S+)", metrics.exposition().decode(), re.MULTILINE))
    assert named, "the doc names no metric"
    assert named <= exported
