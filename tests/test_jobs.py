"""The job contract: ``Job`` serialisation, the retry policy's delays, recorded error text."""

from __future__ import annotations

import pytest

from reviewbot.jobs import MAX_ERROR_CHARS, Job, RetryPolicy, TransientJobError, error_text
from reviewbot.logs import install_redaction, uninstall_redaction
from tests.helpers_jobs import review


def test_job_json_round_trip() -> None:
    job = review("d1", comment_id=5, args="x")
    restored = Job.from_json(job.to_json(), id=3, attempt=2, claimed_by="w")
    assert restored == Job(**{**job.__dict__, "id": 3, "attempt": 2, "claimed_by": "w"})


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=2, backoff_max=10, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
    assert policy.delay(1, retry_after=30) == 30  # GitHub's Retry-After wins when longer
    assert policy.delay(1, retry_after=10**6) == 3600  # but never more than an hour
    jittery = RetryPolicy(backoff_base=10, backoff_max=100, jitter=0.1)
    assert all(10 <= jittery.delay(1) <= 11 for _ in range(50))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_base=10, backoff_max=5)


@pytest.mark.parametrize(
    ("error", "expected_start"),
    [
        (ValueError("plain"), "ValueError: plain"),
        (TransientJobError("token s3cr3t-value leaked"), "TransientJobError: token "),
        (KeyError("x" * 5000), "KeyError: 'xxx"),
    ],
)
def test_error_text_is_redacted_and_bounded(error: BaseException, expected_start: str) -> None:
    install_redaction(["s3cr3t-value"])
    try:
        text = error_text(error)
    finally:
        uninstall_redaction()
    assert text.startswith(expected_start)
    assert "s3cr3t-value" not in text
    assert len(text) <= MAX_ERROR_CHARS
