"""Logging: secrets never reach a log line, and every line carries the delivery context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reviewbot.app import create_app
from reviewbot.jobs import Job, TransientJobError
from reviewbot.logs import (
    REDACTED,
    JsonFormatter,
    PlainFormatter,
    configure_logging,
    current_context,
    install_redaction,
    log_context,
    record_context,
    redact,
    uninstall_redaction,
)
from reviewbot.worker import Worker
from tests.helpers_service import (
    SECRET,
    RecordingHandler,
    deliver,
    make_settings,
    pr_payload,
    running,
)

PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAv3r5Jc0ZyDf8Jj0Q2Z3h6v9Q0x3oLw8kqYFz1mS0bS0tS3Cr3tLine1\n"
    "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgaXQgbG9va3MgbGlrZQ\n"
    "-----END RSA PRIVATE KEY-----"
)
TOKEN = "ghp_" + "Z9" * 18
INSTALLATION_TOKEN = "ghs_" + "k3" * 18
FINE_GRAINED = "github_pat_" + "11ABCDEFG0" * 6
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMiLCJpYXQiOjE3MDB9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture(autouse=True)
def secrets_registered() -> Iterator[None]:
    install_redaction([SECRET, PRIVATE_KEY, TOKEN])
    yield
    uninstall_redaction()  # leave other test modules a clean slate


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every formatted line plus every record's fields that a handler could print."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), record.exc_text or "", record.stack_info or ""]
        parts.append(repr(record.exc_info))
    return "\n".join(parts)


def assert_no_secret(text: str) -> None:
    for secret in (
        SECRET,
        TOKEN,
        INSTALLATION_TOKEN,
        FINE_GRAINED,
        JWT,
        *PRIVATE_KEY.splitlines()[1:3],
    ):
        assert secret not in text
    assert "BEGIN RSA PRIVATE KEY" not in text


@pytest.mark.parametrize(
    "value",
    [SECRET, TOKEN, PRIVATE_KEY, INSTALLATION_TOKEN, FINE_GRAINED, JWT],
)
def test_secrets_are_scrubbed_from_messages_args_and_exceptions(
    caplog: pytest.LogCaptureFixture, value: str
) -> None:
    logger = logging.getLogger("reviewbot.test")
    with caplog.at_level(logging.DEBUG):
        logger.info("in the message " + value)
        logger.warning("in the args %s and %r", value, {"token": value})
        try:
            raise RuntimeError(f"request failed with {value}")
        except RuntimeError:
            logger.exception("with a traceback")
        logger.error("with a stack", stack_info=True, extra={"note": "x"})
    assert len(caplog.records) == 4
    text = everything_logged(caplog)
    assert_no_secret(text)
    assert REDACTED in text
    # The exception itself is still described, only scrubbed.
    assert "RuntimeError: request failed with [REDACTED]" in text


def test_secrets_in_other_libraries_loggers_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.access").info('"%s" 200', f"GET /?token={INSTALLATION_TOKEN}")
        logging.getLogger("httpx").info("Authorization: Bearer %s", "opaque-token-value")
    text = everything_logged(caplog)
    assert INSTALLATION_TOKEN not in text
    assert "opaque-token-value" not in text


def test_each_line_of_a_private_key_is_scrubbed() -> None:
    lines = PRIVATE_KEY.splitlines()
    assert redact(f"read {lines[1]} from disk") == f"read {REDACTED} from disk"
    # A PEM block is recognised even when it is not a configured secret.
    other = "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----"
    assert redact(f"key: {other} end") == f"key: {REDACTED} end"
    assert redact("cut off -----BEGIN EC PRIVATE KEY-----\nQUJD") == f"cut off {REDACTED}"


def test_harmless_text_is_left_alone() -> None:
    text = "PR #12 at ec26c3e57ca3a959ca5aad62de7213c562f8c821 by octocat: ghost_town eyJ"
    assert redact(text) == text


def test_short_values_are_not_redacted_everywhere() -> None:
    install_redaction(["abc"])
    assert redact("abcdef") == "abcdef"


def test_unformattable_records_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("reviewbot.test").info("two %s %s", "args only one")
    [record] = caplog.records
    assert "unformattable" in record.getMessage()


def test_extra_fields_named_like_the_context_do_not_clash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("reviewbot.test").info("x", extra={"repo": "a/b", "delivery_id": "z"})
    assert caplog.records[0].getMessage() == "x"


def test_log_context_nests_and_resets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), log_context(delivery_id="d-1"):
        with log_context(repo="o/r", pr=5, head="abc"):
            logging.getLogger("reviewbot.test").info("inner")
            assert current_context().delivery_id == "d-1"
        logging.getLogger("reviewbot.test").info("outer")
    logging.getLogger("reviewbot.test").info("after")
    contexts = [record_context(record) for record in caplog.records]
    assert (contexts[0].delivery_id, contexts[0].repo, contexts[0].pr) == ("d-1", "o/r", 5)
    assert (contexts[1].delivery_id, contexts[1].repo) == ("d-1", None)
    assert current_context().delivery_id is None


async def test_context_is_per_task() -> None:
    seen: dict[str, str | None] = {}

    async def job(name: str) -> None:
        with log_context(delivery_id=name):
            await asyncio.sleep(0.01)
            seen[name] = current_context().delivery_id

    await asyncio.gather(job("a"), job("b"))
    assert seen == {"a": "a", "b": "b"}


def _record(message: str) -> logging.LogRecord:
    return logging.getLogger("reviewbot.test").makeRecord(
        "reviewbot.test", logging.INFO, __file__, 1, message, (), None
    )


def test_plain_and_json_lines_carry_the_context() -> None:
    with log_context(delivery_id="abc-123", repo="o/r", pr=9, head="deadbeef"):
        record = _record(f"posted with {TOKEN}")
    plain = PlainFormatter("%(levelname)s %(context)s: %(message)s").format(record)
    assert plain == f"INFO delivery=abc-123 repo=o/r pr=9 head=deadbeef: posted with {REDACTED}"
    line = json.loads(JsonFormatter().format(record))
    assert line["delivery_id"] == "abc-123"
    assert (line["repo"], line["pr"], line["head"]) == ("o/r", 9, "deadbeef")
    assert line["message"] == f"posted with {REDACTED}"
    assert line["level"] == "INFO"
    outside = PlainFormatter("%(context)s: %(message)s").format(_record("start"))
    assert outside == "delivery=-: start"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_configure_logging_json_to_stderr(
    restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(log_format="json", level="INFO", secrets=["a-brand-new-secret"])
    configure_logging(log_format="json", level="INFO")  # again: no duplicate lines
    with log_context(delivery_id="d-9"):
        logging.getLogger("uvicorn.error").info("leaked a-brand-new-secret")
        logging.getLogger("reviewbot.test").debug("below the level")
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == f"leaked {REDACTED}"
    assert entry["delivery_id"] == "d-9"
    assert entry["logger"] == "uvicorn.error"


async def test_no_secret_reaches_the_logs_of_the_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "ghp_" + "Q7" * 18
    settings = make_settings(tmp_path, private_key=PRIVATE_KEY, github_token=token)

    def leak(job: Job) -> None:
        # What a careless error message from an HTTP client might contain.
        if job.attempt == 1:
            raise TransientJobError(f"401 with token {token} and {INSTALLATION_TOKEN}")
        raise RuntimeError(f"secret={SECRET} key={PRIVATE_KEY} jwt={JWT}")

    given_up: list[BaseException] = []

    async def give_up(job: Job, error: BaseException) -> None:
        given_up.append(error)
        logging.getLogger("reviewbot.test").error("giving up: %s", error)

    handler = RecordingHandler(leak)
    app = create_app(settings, handler=handler, on_give_up=give_up)
    with caplog.at_level(logging.DEBUG):
        async with running(app) as client:
            await deliver(client, "pull_request", pr_payload("pull_request.opened"), "leaky")
            # A forged delivery signed with a guessed secret: rejected, and nothing leaks.
            await client.post("/webhook", content=b"{}", headers={"X-Hub-Signature-256": SECRET})
            for _ in range(500):
                if given_up:
                    break
                await asyncio.sleep(0.01)
    assert given_up, "the job never gave up"
    text = everything_logged(caplog)
    assert_no_secret(text)
    assert token not in text
    # The job's lines are still attributed to the delivery.
    assert any(record_context(r).delivery_id == "leaky" for r in caplog.records)


async def test_errors_stored_with_jobs_are_scrubbed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, job_max_attempts=1)

    def leak(job: Job) -> None:
        raise RuntimeError(f"secret={SECRET} token={INSTALLATION_TOKEN}")

    app = create_app(settings, handler=RecordingHandler(leak), run_worker=False)
    async with running(app) as client:
        await deliver(client, "pull_request", pr_payload("pull_request.opened"), "stored")
        await Worker.from_settings(
            app.state.queue, RecordingHandler(leak), settings
        ).run_until_idle()
        [record] = await app.state.queue.records("stored")
    assert record.last_error is not None
    assert SECRET not in record.last_error
    assert INSTALLATION_TOKEN not in record.last_error
    assert REDACTED in record.last_error
