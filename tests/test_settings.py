"""Settings: read from the environment, refuse unsafe values, and gate the service start."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from reviewbot.settings import GITHUB_MAX_PAYLOAD_BYTES, Settings, SettingsError

SECRET = "webhook-secret-for-settings-tests"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("REVIEWBOT_") or name == "GITHUB_TOKEN":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def service_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    defaults = {
        "REVIEWBOT_WEBHOOK_SECRET": SECRET,
        "REVIEWBOT_APP_ID": "123",
        "REVIEWBOT_PRIVATE_KEY": (
            "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----"
        ),
    }
    defaults.update(values)
    for name, value in defaults.items():
        monkeypatch.setenv(name, value)


def test_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.github_api_url == "https://api.github.com"
    assert settings.pypi_url == "https://pypi.org"
    assert settings.npm_registry_url == "https://registry.npmjs.org"
    assert settings.data_dir == tmp_path / "xdg" / "reviewbot"
    assert settings.queue_path == settings.data_dir / "jobs.sqlite3"
    assert settings.max_body_bytes == GITHUB_MAX_PAYLOAD_BYTES
    assert settings.review_all_prs is False
    assert settings.job_max_attempts == 5
    assert settings.queue_url is None
    assert settings.insecure_dev is False
    assert (settings.snapshot_workflow, settings.snapshot_update_label) == (
        "Snapshot Tests",
        "update-snapshots",
    )


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    service_env(
        monkeypatch,
        REVIEWBOT_DATA_DIR=str(tmp_path / "store"),
        REVIEWBOT_GITHUB_API_URL="https://ghe.example.com/api/v3/",
        REVIEWBOT_BOT_LOGIN="reviewbot[bot]",
        REVIEWBOT_REVIEW_ALL_PRS="1",
        REVIEWBOT_NOW="2024-05-01T12:00:00Z",
        REVIEWBOT_LOG_FORMAT="json",
        REVIEWBOT_LOG_LEVEL="debug",
        REVIEWBOT_JOB_MAX_ATTEMPTS="3",
        REVIEWBOT_QUEUE_URL="redis://localhost:6379/0",
        GITHUB_TOKEN="ghp_" + "a" * 36,
    )
    settings = Settings()
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == SECRET
    assert settings.app_id == 123
    assert settings.data_dir == tmp_path / "store"
    assert settings.github_api_url == "https://ghe.example.com/api/v3"  # no trailing slash
    assert settings.bot_login == "reviewbot[bot]"
    assert settings.review_all_prs is True
    assert settings.now == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.job_max_attempts == 3
    assert settings.queue_url == "redis://localhost:6379/0"
    assert settings.github_token is not None
    assert settings.github_token.get_secret_value() == "ghp_" + "a" * 36


def test_naive_now_is_utc() -> None:
    assert Settings(now=datetime(2024, 1, 2, 3)).now == datetime(2024, 1, 2, 3, tzinfo=UTC)


def test_secrets_never_show_in_repr_or_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "ghp_" + "b" * 36
    service_env(monkeypatch, GITHUB_TOKEN=token)
    settings = Settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text
        assert token not in text
        assert "PRIVATE KEY" not in text


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_WEBHOOK_SECRET", "  ")
    monkeypatch.setenv("REVIEWBOT_BOT_LOGIN", "")
    monkeypatch.setenv("REVIEWBOT_QUEUE_URL", "")
    settings = Settings()
    assert (settings.webhook_secret, settings.bot_login, settings.queue_url) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REVIEWBOT_MAX_BODY_BYTES", "-1"),
        ("REVIEWBOT_MAX_BODY_BYTES", "0"),
        ("REVIEWBOT_MAX_BODY_BYTES", str(GITHUB_MAX_PAYLOAD_BYTES + 1)),
        ("REVIEWBOT_JOB_MAX_ATTEMPTS", "0"),
        ("REVIEWBOT_JOB_MAX_ATTEMPTS", "-3"),
        ("REVIEWBOT_JOB_BACKOFF_BASE_SECONDS", "-1"),
        ("REVIEWBOT_JOB_BACKOFF_BASE_SECONDS", "0"),
        ("REVIEWBOT_JOB_BACKOFF_MAX_SECONDS", "1"),  # below the base of 5
        ("REVIEWBOT_JOB_LEASE_SECONDS", "0"),
        ("REVIEWBOT_JOB_RETENTION_DAYS", "1"),  # GitHub redelivers for 3 days
        ("REVIEWBOT_WORKER_CONCURRENCY", "0"),
        ("REVIEWBOT_APP_ID", "-5"),
        ("REVIEWBOT_APP_ID", "abc"),
        ("REVIEWBOT_GITHUB_API_URL", "http://ghe.example.com/api/v3"),
        ("REVIEWBOT_GITHUB_API_URL", "ftp://example.com"),
        ("REVIEWBOT_GITHUB_API_URL", "https://user:pass@example.com"),
        ("REVIEWBOT_PYPI_URL", "not a url"),
        ("REVIEWBOT_NPM_REGISTRY_URL", "http://registry.example.com"),
        ("REVIEWBOT_QUEUE_URL", "postgres://db/x"),
        ("REVIEWBOT_BOT_LOGIN", "bad login!"),
        ("REVIEWBOT_LOG_FORMAT", "xml"),
        ("REVIEWBOT_LOG_LEVEL", "LOUD"),
        ("REVIEWBOT_INSECURE_DEV", "maybe"),
        ("REVIEWBOT_NOW", "yesterday"),
        ("REVIEWBOT_SNAPSHOT_WORKFLOW", "x" * 201),
    ],
)
def test_unsafe_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_rejected_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_APP_ID", "ghp_looks_like_a_token_value")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "ghp_looks_like_a_token_value" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:3000/api", "http://[::1]:9000"]
)
def test_plain_http_is_allowed_to_loopback(url: str) -> None:
    assert Settings(github_api_url=url).github_api_url == url.rstrip("/")


def test_service_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    service_env(monkeypatch)
    monkeypatch.delenv("REVIEWBOT_WEBHOOK_SECRET")
    with pytest.raises(SettingsError, match="REVIEWBOT_WEBHOOK_SECRET is not set"):
        Settings().validate_for_service()


def test_insecure_dev_starts_and_warns_loudly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service_env(monkeypatch, REVIEWBOT_INSECURE_DEV="1")
    monkeypatch.delenv("REVIEWBOT_WEBHOOK_SECRET")
    with caplog.at_level(logging.WARNING):
        Settings().validate_for_service()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "INSECURE" in warning.getMessage()
    assert "NOT verified" in warning.getMessage()


def test_insecure_dev_with_a_secret_is_quiet(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service_env(monkeypatch, REVIEWBOT_INSECURE_DEV="1")
    with caplog.at_level(logging.WARNING):
        Settings().validate_for_service()
    assert caplog.records == []


def test_service_lists_every_problem_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("x")
    monkeypatch.setenv("REVIEWBOT_WEBHOOK_SECRET", "short")
    monkeypatch.setenv("REVIEWBOT_PRIVATE_KEY", "pem")
    monkeypatch.setenv("REVIEWBOT_PRIVATE_KEY_PATH", str(key_file))
    with pytest.raises(SettingsError) as caught:
        Settings().validate_for_service()
    message = str(caught.value)
    assert "shorter than 8" in message
    assert "only one of REVIEWBOT_PRIVATE_KEY" in message
    assert "short" not in message.replace("shorter", "")  # the secret itself is not echoed


def test_missing_app_credentials_do_not_stop_the_service_but_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REVIEWBOT_WEBHOOK_SECRET", SECRET)
    settings = Settings()
    settings.validate_for_service()  # a fresh install starts and answers GitHub's ping
    assert settings.app_problems() == [
        "REVIEWBOT_APP_ID is not set",
        "neither REVIEWBOT_PRIVATE_KEY nor REVIEWBOT_PRIVATE_KEY_PATH is set",
    ]
    assert "reviews cannot be posted" in caplog.text


def test_private_key_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    service_env(monkeypatch)
    settings = Settings()
    # One-line PEMs from env files get their line breaks back.
    assert settings.load_private_key() == (
        "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
    )
    key_file = tmp_path / "app.pem"
    key_file.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nfromfile\n-----END RSA PRIVATE KEY-----\n"
    )
    monkeypatch.delenv("REVIEWBOT_PRIVATE_KEY")
    monkeypatch.setenv("REVIEWBOT_PRIVATE_KEY_PATH", str(key_file))
    from_path = Settings()
    from_path.validate_for_service()
    assert "fromfile" in (from_path.load_private_key() or "")
    assert any("fromfile" in value for value in from_path.secret_values())


def test_private_key_path_must_be_readable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    service_env(monkeypatch, REVIEWBOT_PRIVATE_KEY_PATH=str(tmp_path / "missing.pem"))
    monkeypatch.delenv("REVIEWBOT_PRIVATE_KEY")
    [problem] = Settings().app_problems()
    assert "not a readable file" in problem


def test_key_and_path_together_are_ambiguous(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("x")
    service_env(monkeypatch, REVIEWBOT_PRIVATE_KEY_PATH=str(key_file))
    with pytest.raises(SettingsError, match="only one of"):
        Settings().validate_for_service()


def test_secret_values_lists_every_configured_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "ghp_" + "c" * 36
    service_env(monkeypatch, GITHUB_TOKEN=token)
    values = Settings().secret_values()
    assert SECRET in values
    assert token in values
    assert any("-----BEGIN RSA PRIVATE KEY-----\nabc" in value for value in values)


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.review_all_prs = True


def test_registry_config_follows_the_settings() -> None:
    settings = Settings(pypi_url="http://127.0.0.1:9001/", npm_registry_url="https://npm.example")
    config = settings.registry_config()
    assert (config.pypi_url, config.npm_url) == ("http://127.0.0.1:9001", "https://npm.example")
