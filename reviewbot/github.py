"""The GitHub gateway: the only module that sends requests to GitHub.

Built on githubkit for authentication (App JWT → installation token, or a plain token),
configuration (base URL, GHES GraphQL endpoint) and rate-limit detection, while retries are
ours: githubkit's own retry may sleep for up to an hour, so it is switched off and every call
here retries transient failures within a small ``RetryPolicy`` instead. Failures leave this
module as ``GitHubTransientError`` (try the job again later) or ``GitHubError`` (permanent).

Responses are read as plain JSON rather than githubkit's generated models: those are strict
and reject some real payloads, and we need only a handful of fields.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Final, TypeVar
from urllib.parse import quote

import certifi
import httpx
from githubkit import (
    AppAuthStrategy,
    AppInstallationAuthStrategy,
    BaseAuthStrategy,
    GitHub,
    Response,
    TokenAuthStrategy,
)
from githubkit.cache import BaseCacheStrategy, MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    GraphQLFailed,
    PrimaryRateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)

from reviewbot import metrics
from reviewbot.diff import parse_file_patch
from reviewbot.models import ChangedFile, ChangeSet, FileStatus, InlineComment, ReviewEvent, Side
from reviewbot.source import MAX_FILE_BYTES, MAX_GUIDELINE_FILES, SourceError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_BASE_URL: Final = "https://api.github.com"
# GitHub rejects review and comment bodies above 65,536 characters.
MAX_BODY_CHARS: Final = 65_536
# Check run summaries are limited to 65,535 characters.
MAX_CHECK_SUMMARY_CHARS: Final = 65_535
# The pull request files endpoint lists at most 3,000 files (30 pages of 100).
MAX_LISTED_FILES: Final = 3_000
PER_PAGE: Final = 100
# Aliased `object(expression:)` lookups per GraphQL query: keeps one response bounded.
GRAPHQL_BATCH: Final = 50
_TRUNCATION_NOTE: Final = "\n\n_(truncated: longer than GitHub accepts)_"
_FINDING_MARKER = re.compile(r"<!-- reviewbot:finding fp=([0-9a-f]{8,64}) -->")


_REVIEW_MARKER = re.compile(r"<!-- reviewbot:review head=([0-9a-f]{7,64})(?: [^>]*)? -->")
_DELIVERY_MARKER = re.compile(r"<!-- reviewbot:delivery id=([\w.:-]{1,100}) -->")


def delivery_marker(delivery_id: str) -> str:
    """Hidden marker naming the webhook delivery a review answered (redelivery safety)."""
    return f"<!-- reviewbot:delivery id={delivery_id} -->"


@dataclass(frozen=True)
class PreviousReviews:
    """What the bot already said on a PR, read back from its own hidden markers."""

    fingerprints: frozenset[str]
    heads: frozenset[str]
    deliveries: frozenset[str]
    # The PR's head when this was read: a free head check right before posting.
    current_head: str | None


def finding_marker(fingerprint: str) -> str:
    """The hidden marker a posted finding carries, read back by ``previous_findings``."""
    return f"<!-- reviewbot:finding fp={fingerprint} -->"


# ---- errors ------------------------------------------------------------------------------


class GitHubError(Exception):
    """GitHub refused or failed a request for good (404, missing permission, bad input)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubTransientError(GitHubError):
    """A failure worth retrying later: rate limit, outage, timeout after the retry budget.

    ``retry_after`` is GitHub's hint in seconds when it gave one (rate limits).
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class CommentsRejected(GitHubError):
    """GitHub answered 422 to a review with inline comments: post them in the body instead."""


class ArtifactTooLarge(GitHubError):
    """An artifact is bigger than the caller's bound; it was not read to the end."""


# ---- plain data --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How much one call may retry before it gives up with ``GitHubTransientError``."""

    max_retries: int = 3
    # First backoff; doubled on every retry (when GitHub gave no Retry-After).
    backoff_s: float = 1.0
    # Longest single wait: a Retry-After above this is not waited for at all.
    max_wait_s: float = 60.0
    # All waits of one call together.
    total_wait_s: float = 90.0


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    state: str
    draft: bool
    head_sha: str
    base_sha: str
    base_ref: str
    head_ref: str
    # None when the fork the PR came from was deleted.
    head_repo_full_name: str | None
    author_login: str
    labels: tuple[str, ...]
    changed_files: int


@dataclass(frozen=True)
class TreeEntry:
    path: str
    size: int


@dataclass(frozen=True)
class Tree:
    """The blobs of one commit's recursive tree; ``truncated`` when GitHub cut the listing."""

    sha: str
    entries: tuple[TreeEntry, ...]
    truncated: bool


@dataclass(frozen=True)
class Artifact:
    id: int
    name: str
    size_in_bytes: int
    expired: bool
    created_at: str
    workflow_run_id: int | None
    head_branch: str | None
    head_sha: str | None
    # The run's repository and the repository its head came from: they differ for a run
    # on a fork's branch, which must never count as the base branch's baseline.
    repository_id: int | None = None
    head_repository_id: int | None = None

    @property
    def from_fork(self) -> bool:
        return self.head_repository_id != self.repository_id


_STATUSES: Final = {
    "added": FileStatus.ADDED,
    "removed": FileStatus.DELETED,
    "modified": FileStatus.MODIFIED,
    "renamed": FileStatus.RENAMED,
    # A copy is a new file at `filename`; its source stays as it was.
    "copied": FileStatus.ADDED,
    # Mode-only change.
    "changed": FileStatus.MODIFIED,
    "unchanged": FileStatus.MODIFIED,
}


# ---- small helpers -----------------------------------------------------------------------


def _q(value: str | int) -> str:
    """One URL path segment; owner, repo and refs come from payloads we do not control."""
    return quote(str(value), safe="")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_body(body: str, limit: int = MAX_BODY_CHARS) -> str:
    """``body`` cut to GitHub's limit with a note, never leaving a hidden marker half-open.

    Counted in UTF-16 units, the most GitHub could count, so emoji cannot push it over.
    """
    if _utf16_len(body) <= limit:
        return body
    budget = limit - _utf16_len(_TRUNCATION_NOTE)
    cut = budget
    while cut > 0 and _utf16_len(body[:cut]) > budget:
        cut -= max(1, (_utf16_len(body[:cut]) - budget) // 2)
    head = body[:cut]
    # An unclosed "<!--" would swallow the note and everything GitHub renders after it.
    opened = head.rfind("<!--")
    if opened > head.rfind("-->"):
        head = head[:opened]
    return head + _TRUNCATION_NOTE


def _github_message(error: RequestFailed) -> str:
    """GitHub's own explanation from an error body, bounded."""
    try:
        data = error.response.raw_response.json()
    except ValueError:
        return error.response.raw_response.text[:300]
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or "")]
    for item in data.get("errors") or []:
        if isinstance(item, dict):
            parts.append(str(item.get("message") or item.get("code") or ""))
        else:
            parts.append(str(item))
    return "; ".join(part for part in parts if part)[:500]


def _same_login(author: Mapping[str, Any] | None, bot_login: str) -> bool:
    """Is ``author`` (REST ``user`` or GraphQL ``author``) the bot itself?"""
    if not isinstance(author, Mapping):
        return False
    login = str(author.get("login") or "").casefold()
    wanted = bot_login.casefold()
    if login == wanted:
        return True
    # GraphQL names an App's account by its slug ("reviewbot"); REST says "reviewbot[bot]".
    # The type check keeps a human who registered the bare slug from passing as the bot.
    return wanted.endswith("[bot]") and author.get("__typename") == "Bot" and login == wanted[:-5]


def _markers(text: object) -> set[str]:
    return set(_FINDING_MARKER.findall(text)) if isinstance(text, str) else set()


def _pull_request(data: Any) -> PullRequest:
    try:
        head, base = data["head"], data["base"]
        head_repo = head.get("repo") or {}
        return PullRequest(
            number=int(data["number"]),
            title=str(data.get("title") or ""),
            state=str(data.get("state") or ""),
            draft=bool(data.get("draft")),
            head_sha=str(head["sha"]),
            base_sha=str(base["sha"]),
            base_ref=str(base.get("ref") or ""),
            head_ref=str(head.get("ref") or ""),
            head_repo_full_name=head_repo.get("full_name"),
            author_login=str((data.get("user") or {}).get("login") or ""),
            labels=tuple(
                str(label["name"]) for label in data.get("labels") or [] if "name" in label
            ),
            changed_files=int(data.get("changed_files") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise GitHubError(f"unexpected pull request payload: {error!r}") from error


def _changed_file(item: Mapping[str, Any]) -> tuple[ChangedFile, str | None]:
    """One entry of the files listing, and a review note when its diff is missing."""
    path = str(item["filename"])
    raw_status = str(item.get("status") or "modified")
    status = _STATUSES.get(raw_status, FileStatus.MODIFIED)
    patch = item.get("patch")
    changed = parse_file_patch(path, patch if isinstance(patch, str) else "", status)
    if raw_status == "renamed" and item.get("previous_filename"):
        changed.old_path = str(item["previous_filename"])
    if isinstance(patch, str) and patch:
        return changed, None
    if int(item.get("changes") or 0) > 0:
        # Lines changed but no patch: GitHub leaves out diffs that are too large.
        changed.note = "GitHub sent no diff (binary or too large)"
        return changed, f"GitHub sent no diff for {path} (binary or too large)"
    if raw_status in ("renamed", "changed", "unchanged"):
        return changed, None  # a pure rename or mode change has no lines to show
    # GitHub counts no lines for a binary file and sends no patch (an empty file looks alike).
    changed.is_binary = True
    return changed, None


def _artifact(item: Mapping[str, Any]) -> Artifact:
    run = item.get("workflow_run") or {}
    return Artifact(
        id=int(item["id"]),
        name=str(item.get("name") or ""),
        size_in_bytes=int(item.get("size_in_bytes") or 0),
        expired=bool(item.get("expired")),
        created_at=str(item.get("created_at") or ""),
        workflow_run_id=int(run["id"]) if run.get("id") is not None else None,
        head_branch=run.get("head_branch"),
        head_sha=run.get("head_sha"),
        repository_id=_optional_int(run.get("repository_id")),
        head_repository_id=_optional_int(run.get("head_repository_id")),
    )


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _blob_query(count: int) -> str:
    # Expressions travel as variables, so a path with quotes cannot change the query.
    params = "".join(f", $e{i}: String!" for i in range(count))
    blob = "... on Blob { text byteSize isBinary isTruncated }"
    fields = " ".join(f"f{i}: object(expression: $e{i}) {{ {blob} }}" for i in range(count))
    return (
        f"query($owner: String!, $name: String!{params}) "
        f"{{ repository(owner: $owner, name: $name) {{ {fields} }} }}"
    )


_REVIEWS_QUERY: Final = """
query($owner: String!, $name: String!, $number: Int!, $before: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      headRefOid
      reviews(last: 100, before: $before) {
        pageInfo { hasPreviousPage startCursor }
        nodes {
          author { login __typename }
          body
          comments(first: 100) {
            totalCount
            nodes { author { login __typename } body }
          }
        }
      }
    }
  }
}
"""
# Bounds the backwards paging through a PR's reviews (100 per page).
_MAX_REVIEW_PAGES: Final = 10


@cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle costs ~40 ms of the event loop's
    time, and the service makes a gateway (two clients) per job."""
    return ssl.create_default_context(cafile=certifi.where())


# ---- the gateway -------------------------------------------------------------------------


class GitHubGateway:
    """Everything reviewbot asks of GitHub, with timeouts, a retry budget and call counts.

    ``calls`` counts API responses (installation-token requests are in ``token_requests``);
    ``rate_limit_remaining`` is the last ``x-ratelimit-remaining`` GitHub reported.
    """

    def __init__(
        self,
        auth: BaseAuthStrategy,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        retry_budget: RetryPolicy | None = None,
        token_cache: BaseCacheStrategy | None = None,
        sleep: Sleep | None = None,
        login: str | None = None,
    ) -> None:
        self.calls = 0
        self.token_requests = 0
        self.rate_limit_remaining: int | None = None
        self._auth = auth
        self._timeout_s = timeout_s
        self._retry = retry_budget or RetryPolicy()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._login = login
        self._slug: str | None = None
        # githubkit's default cache is process-wide; a private one keeps tokens of one
        # installation (or test) from leaking into another client.
        cache = token_cache or MemCacheStrategy()
        self._gh: GitHub[Any] = GitHub(
            auth,
            base_url=base_url,
            ssl_verify=_tls_context(),
            timeout=httpx.Timeout(timeout_s),
            user_agent="reviewbot",
            auto_retry=False,
            http_cache=False,
            cache_strategy=cache,
            async_event_hooks={"response": [self._on_response]},
        )
        # The artifact download answers with a redirect to a signed blob URL we fetch
        # ourselves, with a size bound; same auth and token cache.
        self._gh_no_redirect: GitHub[Any] = GitHub(
            auth, config=replace(self._gh.config, follow_redirects=False)
        )
        self._base = self._gh.config.base_url

    # -- construction

    @classmethod
    def for_installation(
        cls,
        app_id: int | str,
        private_key: str,
        installation_id: int,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        retry_budget: RetryPolicy | None = None,
        token_cache: BaseCacheStrategy | None = None,
        sleep: Sleep | None = None,
    ) -> GitHubGateway:
        """Act as one installation of the App; the token is cached until a minute before expiry.

        Pass one ``token_cache`` to gateways of the same App to share installation tokens.
        """
        auth = AppInstallationAuthStrategy(app_id, private_key, installation_id)
        return cls(
            auth,
            base_url=base_url,
            timeout_s=timeout_s,
            retry_budget=retry_budget,
            token_cache=token_cache,
            sleep=sleep,
        )

    @classmethod
    def for_app(
        cls,
        app_id: int | str,
        private_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        retry_budget: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> GitHubGateway:
        """Act as the App itself (JWT only): enough for ``app_slug``."""
        return cls(
            AppAuthStrategy(app_id, private_key),
            base_url=base_url,
            timeout_s=timeout_s,
            retry_budget=retry_budget,
            sleep=sleep,
        )

    @classmethod
    def for_token(
        cls,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        retry_budget: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        login: str | None = None,
    ) -> GitHubGateway:
        """Act with a plain token (GITHUB_TOKEN, a PAT). ``login``: who the token is, if known."""
        return cls(
            TokenAuthStrategy(token),
            base_url=base_url,
            timeout_s=timeout_s,
            retry_budget=retry_budget,
            sleep=sleep,
            login=login,
        )

    def __repr__(self) -> str:
        # Never show the auth strategy: it holds the key or token.
        return f"GitHubGateway(base_url={str(self._base)!r}, calls={self.calls})"

    async def __aenter__(self) -> GitHubGateway:
        """Optional: keep one connection pool open for the calls made inside the block."""
        # githubkit leaves its context-manager methods unannotated.
        await self._gh.__aenter__()  # type: ignore[no-untyped-call]
        await self._gh_no_redirect.__aenter__()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self._gh_no_redirect.__aexit__()
        finally:
            await self._gh.__aexit__()

    # -- transport

    async def _on_response(self, response: httpx.Response) -> None:
        if response.request.url.path.endswith("/access_tokens"):
            self.token_requests += 1
        else:
            self.calls += 1
            metrics.GITHUB_CALLS.inc()
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.isdigit():
            self.rate_limit_remaining = int(remaining)
            metrics.GITHUB_RATE_LIMIT.set(self.rate_limit_remaining)

    def _failure(self, what: str, error: GitHubException, idempotent: bool) -> _Failure:
        """Classify one failed attempt: may it be retried now, and what to raise if not."""
        if isinstance(error, RequestError) and isinstance(error.exc, GitHubException):
            # Raised inside the auth flow (the installation-token request) and wrapped; the
            # request itself was never sent, so resending it is safe.
            return self._failure(what, error.exc, idempotent=True)
        if isinstance(error, PrimaryRateLimitExceeded):
            wait = error.retry_after.total_seconds()
            message = f"{what}: GitHub API rate limit exhausted (resets in {wait:.0f} s)"
            return _Failure(GitHubTransientError(message, status=403, retry_after=wait))
        if isinstance(error, SecondaryRateLimitExceeded):
            wait = error.retry_after.total_seconds()
            status = error.response.status_code
            message = f"{what}: GitHub secondary rate limit (retry after {wait:.0f} s)"
            transient = GitHubTransientError(message, status=status, retry_after=wait)
            # GitHub refused the request before acting on it: safe to resend even a POST.
            return _Failure(transient, retry=True, wait=wait)
        if isinstance(error, RequestFailed):
            status = error.response.status_code
            message = f"{what}: GitHub answered {status}: {_github_message(error)}"
            if status >= 500 or status == 429:
                # A POST that failed with 5xx may still have been applied: not resent here,
                # the job queue decides (and re-reads what was posted).
                retry = idempotent or status == 429
                return _Failure(GitHubTransientError(message, status=status), retry=retry)
            return _Failure(GitHubError(message, status=status))
        if isinstance(error, RequestTimeout):
            sent = not isinstance(error.exc, httpx.ConnectTimeout)
            message = f"{what}: no answer from GitHub within {self._timeout_s:g} s"
            return _Failure(GitHubTransientError(message), retry=idempotent or not sent)
        if isinstance(error, RequestError):
            inner = error.exc
            if isinstance(inner, httpx.TransportError):
                sent = not isinstance(inner, httpx.ConnectError)
                message = f"{what}: network error: {type(inner).__name__}"
                return _Failure(GitHubTransientError(message), retry=idempotent or not sent)
            # e.g. a private key PyJWT cannot read; the type only, the text may quote input.
            return _Failure(GitHubError(f"{what}: request failed: {type(inner).__name__}"))
        if isinstance(error, GraphQLFailed):
            errors = "; ".join(item.message for item in error.response.errors or [])
            return _Failure(GitHubError(f"{what}: GraphQL errors: {errors[:500]}"))
        return _Failure(GitHubError(f"{what}: {type(error).__name__}"))

    async def _call(
        self, what: str, operation: Callable[[], Awaitable[T]], *, idempotent: bool
    ) -> T:
        """Run one GitHub operation, retrying transient failures within the budget."""
        policy = self._retry
        waited = 0.0
        retries = 0
        while True:
            try:
                return await operation()
            except GitHubException as error:
                failure = self._failure(what, error, idempotent)
                wait = failure.wait
                if wait is None:
                    wait = min(policy.backoff_s * 2**retries, policy.max_wait_s)
                if (
                    not failure.retry
                    or retries >= policy.max_retries
                    or wait > policy.max_wait_s
                    or waited + wait > policy.total_wait_s
                ):
                    raise failure.error from error
                logger.warning(
                    "GitHub call %s failed (status %s), retrying in %.1f s",
                    what,
                    failure.error.status,
                    wait,
                    extra={"what": what, "status": failure.error.status, "wait_s": wait},
                )
                await self._sleep(wait)
                waited += wait
                retries += 1

    async def _rest(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Response[Any]:
        what = f"{method} {url.split('?')[0]}"
        safe = method in ("GET", "HEAD", "PATCH", "PUT", "DELETE")

        async def send() -> Response[Any]:
            return await self._gh.arequest(method, url, params=params, json=json)

        return await self._call(what, send, idempotent=safe if idempotent is None else idempotent)

    async def _graphql(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            return await self._gh.async_graphql(query, variables)

        # Queries only (no mutations here): always safe to resend.
        return await self._call(f"GraphQL {what}", send, idempotent=True)

    @staticmethod
    def _json(response: Response[Any], what: str) -> Any:
        try:
            return response.raw_response.json()
        except ValueError as error:
            raise GitHubError(f"{what}: GitHub sent a body that is not JSON") from error

    async def _paginate(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        key: str | None = None,
        max_pages: int = 30,
    ) -> tuple[list[Any], bool]:
        """Items of every page (``Link: rel=next``), and whether pages were left unread."""
        items: list[Any] = []
        url = path
        query: Mapping[str, str | int] | None = {**(params or {}), "per_page": PER_PAGE}
        for _ in range(max_pages):
            response = await self._rest("GET", url, params=query)
            data = self._json(response, f"GET {path}")
            page = data.get(key) if key and isinstance(data, dict) else data
            if not isinstance(page, list):
                raise GitHubError(f"GET {path}: expected a list, GitHub sent {type(page).__name__}")
            items.extend(page)
            next_url = response.raw_response.links.get("next", {}).get("url")
            if not next_url:
                return items, False
            # The next link carries the query; only ever follow it to the API we talk to,
            # since the request carries our token.
            target = httpx.URL(next_url)
            if (target.scheme, target.host, target.port) != (
                self._base.scheme,
                self._base.host,
                self._base.port,
            ):
                logger.warning("ignoring a next-page link to another host", extra={"path": path})
                return items, True
            url, query = next_url, None
        return items, True

    # -- identity

    async def app_slug(self) -> str:
        """The App's slug (``GET /app`` with the JWT); the bot posts as ``slug[bot]``."""
        if self._slug is None:
            if not isinstance(self._auth, AppInstallationAuthStrategy | AppAuthStrategy):
                raise GitHubError("app_slug needs GitHub App credentials, not a token")
            response = await self._rest("GET", "/app")
            data = self._json(response, "GET /app")
            slug = data.get("slug") if isinstance(data, dict) else None
            if not isinstance(slug, str) or not slug:
                raise GitHubError("GET /app: no slug in GitHub's answer")
            self._slug = slug
        return self._slug

    async def bot_login(self) -> str:
        """The login our comments carry: ``slug[bot]`` for the App, the token's user else."""
        if self._login is None:
            if isinstance(self._auth, AppInstallationAuthStrategy | AppAuthStrategy):
                self._login = f"{await self.app_slug()}[bot]"
            else:
                response = await self._rest("GET", "/user")
                data = self._json(response, "GET /user")
                login = data.get("login") if isinstance(data, dict) else None
                if not isinstance(login, str) or not login:
                    raise GitHubError("GET /user: no login; pass login= to for_token")
                self._login = login
        return self._login

    # -- pull requests

    async def pull_request(self, owner: str, repo: str, number: int) -> PullRequest:
        path = f"/repos/{_q(owner)}/{_q(repo)}/pulls/{int(number)}"
        response = await self._rest("GET", path)
        return _pull_request(self._json(response, f"GET {path}"))

    async def get_pull_request_head(self, owner: str, repo: str, number: int) -> str:
        """The PR's current head SHA: a cheap check that a review is still current."""
        return (await self.pull_request(owner, repo, number)).head_sha

    async def pr_files(
        self, owner: str, repo: str, number: int, *, changed_files: int | None = None
    ) -> tuple[list[ChangedFile], list[str]]:
        """The PR's files with their diffs, and notes on what GitHub did not give us.

        ``changed_files`` (from ``pull_request``) lets the note name how many were left out.
        """
        path = f"/repos/{_q(owner)}/{_q(repo)}/pulls/{int(number)}/files"
        items, more = await self._paginate(path, max_pages=MAX_LISTED_FILES // PER_PAGE)
        files: list[ChangedFile] = []
        notes: list[str] = []
        for item in items:
            if not isinstance(item, dict) or not item.get("filename"):
                continue
            changed, note = _changed_file(item)
            files.append(changed)
            if note:
                notes.append(note)
        capped = more or len(files) >= MAX_LISTED_FILES
        if capped and (changed_files is None or changed_files > len(files)):
            count = f"{changed_files:,}" if changed_files else f"{len(files):,} or more"
            notes.append(
                f"GitHub lists at most {MAX_LISTED_FILES:,} files; this PR changes {count}, "
                "the rest were not reviewed"
            )
        return files, notes

    async def tree(self, owner: str, repo: str, sha: str) -> Tree:
        """Every blob of one commit, in one recursive tree read."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/git/trees/{_q(sha)}"
        response = await self._rest("GET", path, params={"recursive": "1"})
        data = self._json(response, f"GET {path}")
        if not isinstance(data, dict) or not isinstance(data.get("tree"), list):
            raise GitHubError(f"GET {path}: no tree in GitHub's answer")
        entries = tuple(
            TreeEntry(str(item["path"]), int(item.get("size") or 0))
            for item in data["tree"]
            if isinstance(item, dict) and item.get("type") == "blob" and item.get("path")
        )
        return Tree(sha=sha, entries=entries, truncated=bool(data.get("truncated")))

    async def read_blobs(
        self,
        owner: str,
        repo: str,
        wanted: Iterable[tuple[str, str]],
        *,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> dict[tuple[str, str], str]:
        """Texts of (revision, path) pairs: one GraphQL query per ``GRAPHQL_BATCH`` files.

        Missing, binary, truncated and oversized files are left out.
        """
        keys = list(dict.fromkeys(wanted))
        texts: dict[tuple[str, str], str] = {}
        for start in range(0, len(keys), GRAPHQL_BATCH):
            batch = keys[start : start + GRAPHQL_BATCH]
            variables: dict[str, Any] = {"owner": owner, "name": repo}
            for index, (rev, path) in enumerate(batch):
                variables[f"e{index}"] = f"{rev}:{path}"
            data = await self._graphql("file contents", _blob_query(len(batch)), variables)
            repository = data.get("repository") or {}
            for index, key in enumerate(batch):
                blob = repository.get(f"f{index}")
                if not isinstance(blob, dict) or not isinstance(blob.get("text"), str):
                    continue  # missing path, a directory, or binary (text is null)
                if blob.get("isBinary") or blob.get("isTruncated"):
                    continue
                if int(blob.get("byteSize") or 0) > max_bytes:
                    continue
                texts[key] = blob["text"]
        return texts

    async def previous_findings(
        self, owner: str, repo: str, number: int, bot_login: str
    ) -> set[str]:
        """Fingerprints the bot already posted on this PR, from its hidden markers."""
        return set((await self.previous_reviews(owner, repo, number, bot_login)).fingerprints)

    async def previous_reviews(
        self, owner: str, repo: str, number: int, bot_login: str
    ) -> PreviousReviews:
        """The bot's earlier reviews on this PR (fingerprints, heads, deliveries) and its head.

        One GraphQL query reads review bodies and their inline comments together. Only items
        written by ``bot_login`` count; visible text is never trusted, only the marker.
        """
        found: set[str] = set()
        heads: set[str] = set()
        deliveries: set[str] = set()
        current_head: str | None = None
        overflow = False
        before: str | None = None
        for _ in range(_MAX_REVIEW_PAGES):
            variables = {"owner": owner, "name": repo, "number": int(number), "before": before}
            data = await self._graphql("previous reviews", _REVIEWS_QUERY, variables)
            pull = ((data.get("repository") or {}).get("pullRequest")) or {}
            current_head = current_head or pull.get("headRefOid")
            reviews = pull.get("reviews") or {}
            for review in reviews.get("nodes") or []:
                if not isinstance(review, dict):
                    continue
                if _same_login(review.get("author"), bot_login):
                    body = review.get("body")
                    found |= _markers(body)
                    if isinstance(body, str):
                        heads.update(_REVIEW_MARKER.findall(body))
                        deliveries.update(_DELIVERY_MARKER.findall(body))
                comments = review.get("comments") or {}
                nodes = comments.get("nodes") or []
                overflow |= int(comments.get("totalCount") or 0) > len(nodes)
                for comment in nodes:
                    if isinstance(comment, dict) and _same_login(comment.get("author"), bot_login):
                        found |= _markers(comment.get("body"))
            info = reviews.get("pageInfo") or {}
            if not info.get("hasPreviousPage") or not info.get("startCursor"):
                break
            before = str(info["startCursor"])
        if overflow:
            # A review with more than 100 inline comments: read them all over REST.
            found |= await self._review_comment_markers(owner, repo, number, bot_login)
        return PreviousReviews(
            fingerprints=frozenset(found),
            heads=frozenset(heads),
            deliveries=frozenset(deliveries),
            current_head=str(current_head) if current_head else None,
        )

    async def _review_comment_markers(
        self, owner: str, repo: str, number: int, bot_login: str
    ) -> set[str]:
        path = f"/repos/{_q(owner)}/{_q(repo)}/pulls/{int(number)}/comments"
        items, _ = await self._paginate(path)
        found: set[str] = set()
        for item in items:
            if isinstance(item, dict) and _same_login(item.get("user"), bot_login):
                found |= _markers(item.get("body"))
        return found

    async def post_review(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        commit_id: str,
        body: str,
        event: ReviewEvent | str,
        comments: Sequence[InlineComment] = (),
    ) -> int:
        """Post one review with its inline comments; returns the review id.

        Raises ``CommentsRejected`` when GitHub refuses the comments (422): one comment on a
        line outside the diff makes GitHub reject the whole review.
        """
        path = f"/repos/{_q(owner)}/{_q(repo)}/pulls/{int(number)}/reviews"
        payload: dict[str, Any] = {
            "commit_id": commit_id,
            "body": fit_body(body),
            "event": event.value if isinstance(event, ReviewEvent) else str(event),
        }
        if comments:
            payload["comments"] = [_comment_payload(comment) for comment in comments]
        try:
            response = await self._rest("POST", path, json=payload)
        except GitHubError as error:
            if error.status == 422 and comments:
                raise CommentsRejected(str(error), status=422) from error
            raise
        return _id(self._json(response, f"POST {path}"), f"POST {path}")

    # -- marker comments and checks

    async def upsert_marker_comment(
        self, owner: str, repo: str, number: int, marker: str, body: str
    ) -> int:
        """Keep exactly one bot comment carrying ``marker``: edit the newest, delete the rest."""
        if not marker.strip():
            raise ValueError("a marker comment needs a non-empty marker")
        login = await self.bot_login()
        text = fit_body(body if marker in body else f"{body}\n\n{marker}")
        path = f"/repos/{_q(owner)}/{_q(repo)}/issues/{int(number)}/comments"
        items, _ = await self._paginate(path)
        ours = [
            item
            for item in items
            if isinstance(item, dict)
            and _same_login(item.get("user"), login)
            and marker in str(item.get("body") or "")
        ]
        ours.sort(key=lambda item: (str(item.get("created_at") or ""), int(item.get("id") or 0)))
        if not ours:
            response = await self._rest("POST", path, json={"body": text})
            return _id(self._json(response, f"POST {path}"), f"POST {path}")
        newest = ours[-1]
        comment_id = int(newest["id"])
        comment_path = f"/repos/{_q(owner)}/{_q(repo)}/issues/comments/{comment_id}"
        if newest.get("body") != text:
            await self._rest("PATCH", comment_path, json={"body": text})
        for older in ours[:-1]:
            older_path = f"/repos/{_q(owner)}/{_q(repo)}/issues/comments/{int(older['id'])}"
            try:
                await self._rest("DELETE", older_path)
            except GitHubError as error:
                if error.status != 404:  # already gone (a retried delete, a human)
                    raise
        return comment_id

    async def create_check_run(
        self,
        owner: str,
        repo: str,
        *,
        name: str,
        head_sha: str,
        conclusion: str,
        title: str,
        summary: str,
    ) -> int:
        path = f"/repos/{_q(owner)}/{_q(repo)}/check-runs"
        payload = {
            "name": name,
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion,
            "output": {"title": title[:255], "summary": fit_body(summary, MAX_CHECK_SUMMARY_CHARS)},
        }
        response = await self._rest("POST", path, json=payload)
        return _id(self._json(response, f"POST {path}"), f"POST {path}")

    # -- artifacts

    async def list_workflow_run_artifacts(
        self, owner: str, repo: str, run_id: int
    ) -> list[Artifact]:
        path = f"/repos/{_q(owner)}/{_q(repo)}/actions/runs/{int(run_id)}/artifacts"
        items, _ = await self._paginate(path, key="artifacts", max_pages=5)
        return [_artifact(item) for item in items if isinstance(item, dict)]

    async def list_repo_artifacts(
        self,
        owner: str,
        repo: str,
        name: str,
        *,
        branch: str | None = None,
        max_pages: int = 3,
    ) -> list[Artifact]:
        """Unexpired artifacts called ``name``, newest first; only runs on ``branch`` if given.

        A baseline is the first entry with ``branch`` set to the PR's base branch. With a
        branch, runs whose head came from a fork are left out: a fork's branch may well be
        called ``main`` too, and its artifact would otherwise poison the baseline.
        """
        path = f"/repos/{_q(owner)}/{_q(repo)}/actions/artifacts"
        items, _ = await self._paginate(
            path, params={"name": name}, key="artifacts", max_pages=max_pages
        )
        artifacts = [_artifact(item) for item in items if isinstance(item, dict)]
        kept = [
            artifact
            for artifact in artifacts
            if artifact.name == name
            and not artifact.expired
            and (branch is None or (artifact.head_branch == branch and not artifact.from_fork))
        ]
        return sorted(kept, key=lambda artifact: (artifact.created_at, artifact.id), reverse=True)

    async def download_artifact(
        self,
        owner: str,
        repo: str,
        artifact_id: int,
        max_bytes: int,
        *,
        deadline_s: float = 300.0,
    ) -> bytes:
        """The artifact's zip, read no further than ``max_bytes`` (``ArtifactTooLarge``)."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/actions/artifacts/{int(artifact_id)}/zip"
        what = f"GET {path}"

        async def send() -> Response[Any]:
            return await self._gh_no_redirect.arequest("GET", path)

        response = await self._call(what, send, idempotent=True)
        if response.status_code not in (301, 302, 303, 307, 308):
            content = response.raw_response.content
            if len(content) > max_bytes:
                raise ArtifactTooLarge(f"{what}: artifact is over {max_bytes} bytes")
            return content
        location = response.headers.get("location")
        if not location:
            raise GitHubError(f"{what}: redirect without a location")
        # Resolved against the API URL in case it is relative; fetched without our token.
        target = response.raw_request.url.join(location)
        try:
            async with asyncio.timeout(deadline_s):
                return await self._download(target, max_bytes, what)
        except TimeoutError as error:
            raise GitHubTransientError(f"{what}: download took over {deadline_s:g} s") from error

    async def _download(self, url: httpx.URL, max_bytes: int, what: str) -> bytes:
        # The signed URL is a credential for a minute: it never goes into a log line.
        timeout = httpx.Timeout(self._timeout_s)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=timeout, follow_redirects=True, max_redirects=3
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    message = f"{what}: artifact storage answered {response.status_code}"
                    if response.status_code >= 500:
                        raise GitHubTransientError(message, status=response.status_code)
                    raise GitHubError(message, status=response.status_code)
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ArtifactTooLarge(
                        f"{what}: artifact is {declared} bytes, over {max_bytes}"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactTooLarge(f"{what}: artifact is over {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            raise GitHubTransientError(
                f"{what}: download failed: {type(error).__name__}"
            ) from error


@dataclass(frozen=True)
class _Failure:
    error: GitHubError
    retry: bool = False
    # Seconds GitHub asked us to wait; None means our own backoff.
    wait: float | None = None


def _id(data: Any, what: str) -> int:
    if isinstance(data, dict) and isinstance(data.get("id"), int):
        return int(data["id"])
    raise GitHubError(f"{what}: no id in GitHub's answer")


def _comment_payload(comment: InlineComment) -> dict[str, Any]:
    body = comment.body
    if comment.fingerprint and finding_marker(comment.fingerprint) not in body:
        body = f"{body}\n\n{finding_marker(comment.fingerprint)}"
    payload: dict[str, Any] = {
        "path": comment.path,
        "line": comment.line,
        "side": "RIGHT",
        "body": fit_body(body),
    }
    # GitHub wants start_line strictly above line; a single-line comment must not send it.
    if comment.start_line is not None and comment.start_line < comment.line:
        payload["start_line"] = comment.start_line
        payload["start_side"] = "RIGHT"
    return payload


# ---- the pull request as a change source -------------------------------------------------


def _default_is_guideline(path: str) -> bool:
    # Imported on first use, so the gateway alone loads no guideline machinery.
    from reviewbot.guidelines import is_guideline_path

    return is_guideline_path(path)


class PullRequestSource:
    """A ``ChangeSource`` over a GitHub pull request, reading through a ``GitHubGateway``.

    Permanent failures to read the PR become ``SourceError``; transient ones propagate as
    ``GitHubTransientError`` so the job is retried. Things read only partly are added to
    ``notes`` (the same list as the change set's notes once ``changeset`` ran).
    """

    def __init__(
        self,
        gateway: GitHubGateway,
        owner: str,
        repo: str,
        number: int,
        pr: PullRequest | None = None,
        *,
        is_guideline: Callable[[str], bool] | None = None,
        list_head_paths: bool = True,
    ) -> None:
        self.gateway = gateway
        self.owner = owner
        self.repo = repo
        self.number = number
        self.pr = pr
        self.notes: list[str] = []
        self._is_guideline = is_guideline or _default_is_guideline
        self._list_head_paths = list_head_paths
        self._trees: dict[str, Tree] = {}
        self._changeset: ChangeSet | None = None

    async def _pull(self) -> PullRequest:
        if self.pr is None:
            try:
                self.pr = await self.gateway.pull_request(self.owner, self.repo, self.number)
            except GitHubTransientError:
                raise
            except GitHubError as error:
                name = f"{self.owner}/{self.repo}#{self.number}"
                raise SourceError(f"cannot read pull request {name}: {error}") from error
        return self.pr

    async def _tree(self, sha: str) -> Tree:
        if sha not in self._trees:
            tree = await self.gateway.tree(self.owner, self.repo, sha)
            if tree.truncated:
                self.notes.append(
                    f"GitHub listed only part of the files at {sha[:12]}; some guideline "
                    "files may have been missed"
                )
            self._trees[sha] = tree
        return self._trees[sha]

    async def changeset(self) -> ChangeSet:
        if self._changeset is not None:
            return self._changeset
        name = f"{self.owner}/{self.repo}#{self.number}"
        pr = await self._pull()
        try:
            files, notes = await self.gateway.pr_files(
                self.owner, self.repo, self.number, changed_files=pr.changed_files
            )
        except GitHubTransientError:
            raise
        except GitHubError as error:
            raise SourceError(f"cannot read pull request {name}: {error}") from error
        head_paths: tuple[str, ...] = ()
        if self._list_head_paths:
            try:
                # Shared with guideline_files("head"), so it costs no extra call.
                head_paths = tuple(entry.path for entry in (await self._tree(pr.head_sha)).entries)
            except GitHubTransientError:
                raise
            except GitHubError as error:
                self.notes.append(f"could not list the files at head: {error}")
        self.notes[:0] = notes
        self._changeset = ChangeSet(
            base=pr.base_sha,
            head=pr.head_sha,
            files=files,
            notes=self.notes,
            title=pr.title,
            head_paths=head_paths,
        )
        return self._changeset

    async def read_files(
        self, wanted: Iterable[tuple[str, Side]]
    ) -> Mapping[tuple[str, Side], str]:
        pr = await self._pull()
        keys = list(dict.fromkeys(wanted))
        revs = {"head": pr.head_sha, "base": pr.base_sha}
        try:
            texts = await self.gateway.read_blobs(
                self.owner, self.repo, [(revs[side], path) for path, side in keys]
            )
        except GitHubTransientError:
            raise
        except GitHubError as error:
            self.notes.append(f"could not read file contents: {error}")
            return {}
        return {
            (path, side): texts[(revs[side], path)]
            for path, side in keys
            if (revs[side], path) in texts
        }

    async def guideline_files(self, side: Side) -> Mapping[str, str]:
        pr = await self._pull()
        sha = pr.head_sha if side == "head" else pr.base_sha
        try:
            tree = await self._tree(sha)
            paths = sorted(
                entry.path
                for entry in tree.entries
                if entry.size <= MAX_FILE_BYTES and self._is_guideline(entry.path)
            )
            if len(paths) > MAX_GUIDELINE_FILES:
                self.notes.append(
                    f"{len(paths)} guideline files at {side}; only the first "
                    f"{MAX_GUIDELINE_FILES} were read"
                )
                paths = paths[:MAX_GUIDELINE_FILES]
            texts = await self.gateway.read_blobs(self.owner, self.repo, [(sha, p) for p in paths])
        except GitHubTransientError:
            raise
        except GitHubError as error:
            self.notes.append(f"could not read the guideline files at {side}: {error}")
            return {}
        return {path: texts[(sha, path)] for path in paths if (sha, path) in texts}


__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BODY_CHARS",
    "Artifact",
    "ArtifactTooLarge",
    "CommentsRejected",
    "GitHubError",
    "GitHubGateway",
    "GitHubTransientError",
    "PreviousReviews",
    "PullRequest",
    "PullRequestSource",
    "RetryPolicy",
    "Tree",
    "TreeEntry",
    "delivery_marker",
    "finding_marker",
    "fit_body",
]
