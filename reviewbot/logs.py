"""Own logging: setup (plain or JSON lines), secret redaction, and per-delivery context.

Redaction happens where records are *made* (a log record factory), not in one handler: every
handler — ours, uvicorn's, pytest's caplog — then sees the scrubbed text, and the exception
object (whose arguments may hold a token) is replaced by its scrubbed traceback text.

The delivery context (delivery id, repository, pull request, head) lives in a contextvar, so
every line logged while a delivery or job is handled carries it without passing it around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

REDACTED = "[REDACTED]"
# Shorter known secrets are not redacted by value: scrubbing every "abc" would garble logs, and
# the settings refuse webhook secrets that short anyway.
_MIN_SECRET_CHARS = 4
# Secrets recognisable by shape, whether or not they are configured here.
_PATTERNS = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            r"\bgh[pousr]_[A-Za-z0-9]{16,}",
            r"\bgithub_pat_[A-Za-z0-9_]{16,}",
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            # An Authorization header value, whatever the scheme's token looks like.
            r"(?i:(?<=authorization: )(?:bearer|token|basic) [^\s'\"]+)",
        )
    )
)


@dataclass(frozen=True)
class LogContext:
    delivery_id: str | None = None
    repo: str | None = None
    pr: int | None = None
    head: str | None = None


_CONTEXT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "reviewbot_log_context", default=None
)


def current_context() -> LogContext:
    return _CONTEXT.get() or LogContext()


@contextmanager
def log_context(
    *,
    delivery_id: str | None = None,
    repo: str | None = None,
    pr: int | None = None,
    head: str | None = None,
) -> Iterator[LogContext]:
    """Add fields to the context of every record logged inside the block (None keeps a field)."""
    outer = current_context()
    context = LogContext(
        delivery_id=outer.delivery_id if delivery_id is None else delivery_id,
        repo=outer.repo if repo is None else repo,
        pr=outer.pr if pr is None else pr,
        head=outer.head if head is None else head,
    )
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


class Redactor:
    """Scrubs known secret values and secret-shaped strings from text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        fresh: set[str] = set()
        for secret in secrets:
            fresh.add(secret)
            # A PEM is often logged one line at a time (or its body without the armour).
            fresh.update(line.strip() for line in secret.splitlines())
        fresh = {value for value in fresh if len(value) >= _MIN_SECRET_CHARS}
        with self._lock:
            # Longest first, so a whole key is replaced before one of its lines could be.
            self._secrets = tuple(
                sorted(set(self._secrets) | fresh, key=lambda value: (-len(value), value))
            )

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _PATTERNS.sub(REDACTED, text)


# Process-wide, like logging itself: secrets registered by any Settings are scrubbed everywhere.
redact = Redactor()


def _format_exception(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info == (None, None, None):
        return record.exc_text
    exc_type, exc, tb = record.exc_info
    return "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError) as error:
        # A bad format string must not lose the line (nor crash the caller).
        message = f"{record.msg!r} (unformattable log arguments: {error})"
    record.msg = redact(message)
    record.args = None
    exc_text = _format_exception(record)
    # Formatters print exc_text when exc_info is empty; dropping the exception object keeps
    # its arguments (which may hold a token) from reaching any handler.
    record.exc_info = None
    record.exc_text = redact(exc_text) if exc_text else None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


# The factory that was in place before ours, while ours is installed.
_previous_factory: Callable[..., logging.LogRecord] | None = None
_ours: list[Callable[..., logging.LogRecord]] = []
_install_lock = threading.Lock()


def install_redaction(secrets: Iterable[str] = ()) -> None:
    """Register secret values and make every log record carry context and scrubbed text.

    Idempotent; later calls only add secrets.
    """
    global _previous_factory
    redact.add(secrets)
    with _install_lock:
        if _previous_factory is not None:
            return
        base_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base_factory(*args, **kwargs)
            # One namespaced attribute, so `extra={"repo": ...}` from any caller cannot clash.
            record.reviewbot_context = current_context()
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _previous_factory = base_factory
        _ours.append(factory)


def uninstall_redaction() -> None:
    """Undo ``install_redaction`` and forget the secrets (tests that must not leak state)."""
    global _previous_factory
    with _install_lock:
        # Only if nobody wrapped ours meanwhile: restoring would drop their factory too.
        if _previous_factory is not None and logging.getLogRecordFactory() in _ours:
            logging.setLogRecordFactory(_previous_factory)
            _previous_factory = None
            _ours.clear()
        redact.clear()


def record_context(record: logging.LogRecord) -> LogContext:
    """The delivery context a record was logged in (empty if redaction is not installed)."""
    context = getattr(record, "reviewbot_context", None)
    return context if isinstance(context, LogContext) else LogContext()


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    context = record_context(record)
    return {
        "delivery_id": context.delivery_id,
        "repo": context.repo,
        "pr": context.pr,
        "head": context.head,
    }


class PlainFormatter(logging.Formatter):
    """``time level logger delivery=… [repo=… pr=… head=…]: message``."""

    def format(self, record: logging.LogRecord) -> str:
        context = _context_of(record)
        fields = [f"delivery={context['delivery_id'] or '-'}"]
        fields += [
            f"{key}={value}" for key, value in context.items() if key != "delivery_id" and value
        ]
        record.context = " ".join(fields)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in _context_of(record).items() if value})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    *,
    log_format: Literal["plain", "json"] = "plain",
    level: str = "INFO",
    secrets: Iterable[str] = (),
) -> None:
    """Send every log record to stderr in the chosen format, scrubbed of secrets.

    Replaces the handlers of the root logger (not of named loggers), so calling it again
    reconfigures instead of duplicating lines.
    """
    install_redaction(secrets)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            PlainFormatter("%(asctime)s %(levelname)s %(name)s %(context)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's loggers keep their own handlers unless told otherwise; route them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
