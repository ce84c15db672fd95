"""Own the service's configuration: one typed ``Settings`` read from the environment.

Every variable is ``REVIEWBOT_<FIELD>`` except ``GITHUB_TOKEN`` (the CLI's personal token, by
the name every CI system already exports). There is no module-level instance: whoever needs
settings builds one (``Settings()``) and passes it down explicitly. Values that would make the
service unsafe are refused when the object is built; what only the webhook service needs (a
webhook secret, app credentials) is checked by ``validate_for_service``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from reviewbot.registry import RegistryConfig

logger = logging.getLogger(__name__)

# GitHub caps webhook payloads at 25 MB and drops bigger ones itself; nothing larger is genuine.
GITHUB_MAX_PAYLOAD_BYTES = 25 * 1024 * 1024
# An HMAC key this short can be brute-forced offline from a single signed delivery.
MIN_WEBHOOK_SECRET_CHARS = 8

_BOT_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
_QUEUE_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(ValueError):
    """The configuration cannot run the service; the message names every variable at fault."""


def _default_data_dir() -> Path:
    # XDG data home rather than ./data: the job store must not move with the working directory,
    # or a restart from another directory would silently forget queued deliveries.
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reviewbot"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_base_url(value: str, name: str) -> str:
    """https anywhere, plain http only to loopback (local fakes, tests)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"{name} must use https (plain http is allowed only to loopback)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{name} must not carry credentials, a query or a fragment")
    return value.strip().rstrip("/")


class Settings(BaseSettings):
    """Everything configurable, with safe defaults; see the README for each variable."""

    model_config = SettingsConfigDict(
        env_prefix="REVIEWBOT_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # a rejected value may be a secret
        # `REVIEWBOT_APP_ID=` in an env file means "not set", not "parse an empty number".
        env_ignore_empty=True,
    )

    # --- GitHub App --------------------------------------------------------------------
    webhook_secret: SecretStr | None = None
    # Accept unsigned deliveries when no secret is set. Local development only; warns loudly.
    insecure_dev: bool = False
    app_id: int | None = Field(default=None, gt=0)
    private_key: SecretStr | None = None
    private_key_path: Path | None = None
    github_api_url: str = "https://api.github.com"
    # The app's bot user, e.g. "reviewbot[bot]"; when unset the gateway reads the app's slug.
    bot_login: str | None = None
    # A personal or Actions token for CLI use (`reviewbot review` against a PR); not prefixed.
    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GITHUB_TOKEN", "REVIEWBOT_GITHUB_TOKEN"),
    )

    # --- storage and registries ----------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir)
    pypi_url: str = "https://pypi.org"
    npm_registry_url: str = "https://registry.npmjs.org"
    # Freeze "now" for package-age checks (reproducible reviews and tests).
    now: datetime | None = None

    # --- what triggers a review ----------------------------------------------------------
    # False: automatic triggers review only PRs touching conversation API code or dependency
    # files (the pipeline decides after reading the files); True: every PR.
    review_all_prs: bool = False

    # --- HTTP and jobs --------------------------------------------------------------------
    max_body_bytes: int = Field(default=GITHUB_MAX_PAYLOAD_BYTES, gt=0)
    run_worker: bool = True  # run the worker inside `reviewbot serve`
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    job_max_attempts: int = Field(default=5, ge=1, le=50)
    job_backoff_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    job_backoff_max_seconds: float = Field(default=900.0, gt=0, le=86400)
    # A running job's lease; the worker renews it every third of this while the job runs, so
    # a job whose worker died is picked up again at most this long after the death.
    job_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Finished jobs are kept this long to recognise redeliveries (GitHub offers redelivery of
    # deliveries from the past 3 days).
    job_retention_days: float = Field(default=14.0, ge=3, le=3650)
    # None: the embedded SQLite store under data_dir; redis://… for a shared queue.
    queue_url: str | None = None

    # `reviewbot worker` has no HTTP service: set a port to expose its /metrics there.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # --- logging --------------------------------------------------------------------------
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- visual snapshot tests ------------------------------------------------------------
    snapshot_workflow: str = Field(default="Snapshot Tests", min_length=1, max_length=200)
    snapshot_baseline_artifact: str = Field(default="snapshot-baselines", min_length=1)
    snapshot_current_artifact: str = Field(default="snapshots", min_length=1)
    snapshot_update_label: str = Field(default="update-snapshots", min_length=1)

    @field_validator("webhook_secret", "private_key", "github_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `REVIEWBOT_WEBHOOK_SECRET=` in an env file means "not configured", never "empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("private_key_path", "queue_url", "bot_login", mode="before")
    @classmethod
    def _blank_string_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("github_api_url")
    @classmethod
    def _github_url(cls, value: str) -> str:
        return _checked_base_url(value, "REVIEWBOT_GITHUB_API_URL")

    @field_validator("pypi_url")
    @classmethod
    def _pypi_url(cls, value: str) -> str:
        return _checked_base_url(value, "REVIEWBOT_PYPI_URL")

    @field_validator("npm_registry_url")
    @classmethod
    def _npm_url(cls, value: str) -> str:
        return _checked_base_url(value, "REVIEWBOT_NPM_REGISTRY_URL")

    @field_validator("bot_login")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        if value is not None and not _BOT_LOGIN.match(value):
            raise ValueError("REVIEWBOT_BOT_LOGIN must be a GitHub login such as 'name[bot]'")
        return value

    @field_validator("queue_url")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in _QUEUE_SCHEMES:
            raise ValueError("REVIEWBOT_QUEUE_URL must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        if not str(value).strip():
            raise ValueError("REVIEWBOT_DATA_DIR must not be empty")
        return value.expanduser()

    @field_validator("now")
    @classmethod
    def _aware_now(cls, value: datetime | None) -> datetime | None:
        # A naive timestamp is read as UTC rather than the host's zone: reviews must not
        # change with the server's TZ.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.job_backoff_max_seconds < self.job_backoff_base_seconds:
            raise ValueError(
                "REVIEWBOT_JOB_BACKOFF_MAX_SECONDS must not be below "
                "REVIEWBOT_JOB_BACKOFF_BASE_SECONDS"
            )
        if self.max_body_bytes > GITHUB_MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"REVIEWBOT_MAX_BODY_BYTES must not exceed {GITHUB_MAX_PAYLOAD_BYTES} "
                "(GitHub's own payload cap)"
            )
        return self

    # ---- derived values ----------------------------------------------------------------

    @property
    def queue_path(self) -> Path:
        """The embedded job store's file."""
        return self.data_dir / "jobs.sqlite3"

    def registry_config(self) -> RegistryConfig:
        """The package registries' client configuration."""
        from reviewbot.registry import RegistryConfig  # imported here: settings stay I/O-free

        return RegistryConfig(pypi_url=self.pypi_url, npm_url=self.npm_registry_url)

    def load_private_key(self) -> str | None:
        """The app's PEM private key from ``private_key`` or ``private_key_path``.

        Env files and container orchestrators often carry a PEM on one line with literal
        ``\\n``; those are turned back into line breaks.
        """
        if self.private_key is not None:
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_path is not None:
            return self.private_key_path.expanduser().read_text(encoding="utf-8")
        return None

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor."""
        values = [
            secret.get_secret_value()
            for secret in (self.webhook_secret, self.private_key, self.github_token)
            if secret is not None
        ]
        if self.queue_url is not None and urlsplit(self.queue_url).password:
            values.append(str(urlsplit(self.queue_url).password))
        if self.private_key is not None:
            values.append(self.private_key.get_secret_value().replace("\\n", "\n"))
        if self.private_key_path is not None:
            # Unreadable: service_problems() reports it, and there is nothing to redact.
            with contextlib.suppress(OSError):
                values.append(self.load_private_key() or "")
        return [value for value in values if value]

    def service_problems(self) -> list[str]:
        """Why the webhook service must not start with these settings (empty when it may)."""
        problems: list[str] = []
        if self.webhook_secret is None:
            if not self.insecure_dev:
                problems.append(
                    "REVIEWBOT_WEBHOOK_SECRET is not set: every delivery would be accepted "
                    "unsigned (set REVIEWBOT_INSECURE_DEV=1 to allow that for local development)"
                )
        elif len(self.webhook_secret.get_secret_value()) < MIN_WEBHOOK_SECRET_CHARS:
            problems.append(
                f"REVIEWBOT_WEBHOOK_SECRET is shorter than {MIN_WEBHOOK_SECRET_CHARS} characters"
            )
        if self.private_key is not None and self.private_key_path is not None:
            problems.append("set only one of REVIEWBOT_PRIVATE_KEY and REVIEWBOT_PRIVATE_KEY_PATH")
        return problems

    def app_problems(self) -> list[str]:
        """What keeps the service from acting on GitHub (empty when the App is configured).

        Not fatal: a fresh install starts, answers GitHub's ping and says on /readyz what is
        missing; deliveries that need work are refused with 503 until then, so GitHub can
        redeliver them.
        """
        problems: list[str] = []
        if self.app_id is None:
            problems.append("REVIEWBOT_APP_ID is not set")
        if self.private_key is None and self.private_key_path is None:
            problems.append("neither REVIEWBOT_PRIVATE_KEY nor REVIEWBOT_PRIVATE_KEY_PATH is set")
        elif self.private_key is None and self.private_key_path is not None:
            path = self.private_key_path.expanduser()
            if not path.is_file() or not os.access(path, os.R_OK):
                problems.append(f"REVIEWBOT_PRIVATE_KEY_PATH {str(path)!r} is not a readable file")
        return problems

    def validate_for_service(self) -> None:
        """Refuse to serve webhooks with unsafe or incomplete settings; warn on insecure dev.

        Raises ``SettingsError`` listing every problem at once, so one restart fixes them all.
        """
        problems = self.service_problems()
        if problems:
            raise SettingsError("cannot start the service:\n  - " + "\n  - ".join(problems))
        for problem in self.app_problems():
            logger.warning("GitHub App not configured: %s; reviews cannot be posted", problem)
        if self.webhook_secret is None and self.insecure_dev:
            logger.warning(
                "!!! INSECURE DEVELOPMENT MODE: REVIEWBOT_WEBHOOK_SECRET is not set and "
                "REVIEWBOT_INSECURE_DEV=1, so webhook signatures are NOT verified and anyone "
                "who can reach this server can trigger reviews. Never run this in production. !!!"
            )
