"""Own the checks on an incoming delivery: size bound, signature, headers, JSON → ``Event``.

Order matters: the body is bounded before it is buffered, and the HMAC is checked on the raw
bytes before anything is parsed, so an unauthenticated sender can make us do nothing but hash
at most ``max_body_bytes``. Each failure is a ``WebhookError`` carrying its HTTP status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Mapping

from pydantic import SecretStr

from reviewbot.events import Event

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"

# GitHub's delivery ids are UUIDs and event names snake_case; anything else is not from GitHub
# and must not reach the logs or the job store verbatim.
_DELIVERY_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
_EVENT_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")


class WebhookError(Exception):
    """A delivery we refuse, with the HTTP status and a short reason for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` (tests, replay, bench)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    Content-Length is checked first (no byte read); the streamed read is bounded too, since a
    chunked body has no length and a declared one may lie.
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise WebhookError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise WebhookError(413, f"payload larger than {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise WebhookError(413, f"payload larger than {limit} bytes")
    return bytes(body)


def verify_signature(
    secret: SecretStr | None, body: bytes, header: str | None, *, insecure_dev: bool = False
) -> None:
    """Raise 401 unless ``header`` is the HMAC-SHA256 of ``body`` under ``secret``.

    Without a secret, only ``insecure_dev`` lets a delivery through (the settings refuse to
    start otherwise, and this refuses again in case they were bypassed).
    """
    if secret is None:
        if insecure_dev:
            return
        raise WebhookError(401, "webhook secret not configured")
    if not header:
        raise WebhookError(401, "missing X-Hub-Signature-256")
    expected = sign(secret.get_secret_value(), body).encode()
    # Constant time: a byte-by-byte comparison would leak how much of a forgery was right.
    if not hmac.compare_digest(expected, header.strip().encode("utf-8", "surrogateescape")):
        raise WebhookError(401, "signature does not match")


def parse_event(headers: Mapping[str, str], body: bytes) -> Event:
    """Headers and JSON body of an authenticated delivery → ``Event`` (400 if malformed)."""
    name = headers.get(EVENT_HEADER)
    if not name:
        raise WebhookError(400, "missing X-GitHub-Event")
    if not _EVENT_NAME.match(name):
        raise WebhookError(400, "invalid X-GitHub-Event")
    delivery_id = headers.get(DELIVERY_HEADER)
    if not delivery_id:
        raise WebhookError(400, "missing X-GitHub-Delivery")
    if not _DELIVERY_ID.match(delivery_id):
        raise WebhookError(400, "invalid X-GitHub-Delivery")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad JSON and bad UTF-8; RecursionError absurd nesting.
        raise WebhookError(
            400, "payload is not JSON (set the webhook's content type to application/json)"
        ) from error
    if not isinstance(payload, dict):
        raise WebhookError(400, "payload is not a JSON object")
    return Event(name=name, delivery_id=delivery_id, payload=payload)


def safe_delivery_id(headers: Mapping[str, str]) -> str | None:
    """The delivery id if it is well-formed (for log context before it was validated)."""
    delivery_id = headers.get(DELIVERY_HEADER)
    if delivery_id and _DELIVERY_ID.match(delivery_id):
        return delivery_id
    return None
