"""One fake GitHub for every test: REST and GraphQL on respx, over in-memory repository state.

Keyed by route (method + URL pattern), it holds pull requests, their files and reviews,
commits (blobs by SHA), issue comments, check runs and artifacts; it records every request
sent, checks auth (tokens, and App JWTs against the App's public key), pages lists with
``Link`` headers like GitHub, and can be told to fail a route (status, rate limits, timeouts).

    with fake_github_server() as fake:
        fake.add_token("t0ken", "octocat")
        fake.add_commit("o/r", "base1", {"a.py": "x = 1\n"})
        ...
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import respx

DEFAULT_API = "https://api.github.com"
BLOB_BASE = "https://artifacts.blob.example"
# GraphQL's Blob.text is cut off above this size (isTruncated), like GitHub does.
BLOB_TEXT_LIMIT = 512 * 1024
LISTED_FILES_CAP = 3_000

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


# ---- state -------------------------------------------------------------------------------


@dataclass
class FakeFile:
    """One entry of ``GET /pulls/{n}/files``; ``patch=None`` means GitHub sent no diff."""

    filename: str
    status: str = "modified"
    patch: str | None = None
    previous_filename: str | None = None
    additions: int | None = None
    deletions: int | None = None

    @classmethod
    def added(cls, filename: str, text: str) -> FakeFile:
        """A new file whose patch adds every line of ``text``."""
        lines = text.splitlines()
        patch = f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines)
        return cls(filename, "added", patch)

    def counts(self) -> tuple[int, int]:
        lines = (self.patch or "").splitlines()
        adds = sum(1 for line in lines if line.startswith("+"))
        dels = sum(1 for line in lines if line.startswith("-"))
        return (
            adds if self.additions is None else self.additions,
            dels if self.deletions is None else self.deletions,
        )

    def as_json(self) -> dict[str, Any]:
        adds, dels = self.counts()
        data: dict[str, Any] = {
            "sha": f"blob-{abs(hash(self.filename)) % 10**8}",
            "filename": self.filename,
            "status": self.status,
            "additions": adds,
            "deletions": dels,
            "changes": adds + dels,
        }
        if self.patch is not None:
            data["patch"] = self.patch
        if self.previous_filename is not None:
            data["previous_filename"] = self.previous_filename
        return data

    def right_lines(self) -> set[int]:
        """Head-side lines the patch shows: the only lines GitHub accepts comments on."""
        lines: set[int] = set()
        number = 0
        for raw in (self.patch or "").splitlines():
            match = _HUNK.match(raw)
            if match:
                number = int(match.group(1))
            elif raw.startswith(("+", " ")):
                lines.add(number)
                number += 1
        return lines


@dataclass
class FakePull:
    number: int
    head_sha: str
    base_sha: str
    title: str = "A change"
    state: str = "open"
    draft: bool = False
    base_ref: str = "main"
    head_ref: str = "feature"
    author: str = "octocat"
    labels: list[str] = field(default_factory=list)
    head_repo_full_name: str | None = None
    files: list[FakeFile] = field(default_factory=list)
    # What `changed_files` says; defaults to len(files) (set it above 3,000 to test the cap).
    changed_files: int | None = None
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review_comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeRepo:
    full_name: str
    # Commit SHA -> path -> content.
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    truncated_trees: set[str] = field(default_factory=set)
    pulls: dict[int, FakePull] = field(default_factory=dict)
    issue_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    artifact_zips: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request as GitHub saw it. ``path`` is relative to the API root (no GHES prefix)."""

    method: str
    route: str
    path: str
    params: dict[str, str]
    json: Any
    headers: httpx.Headers
    url: str
    # Who the request authenticated as ("app" for a valid JWT), None if it did not.
    login: str | None = None


@dataclass
class Injection:
    route: str
    times: int
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    exception: type[httpx.TransportError] | None = None
    when: Callable[[Recorded], bool] | None = None


@dataclass
class Hook:
    """Something that happens on GitHub's side as a request arrives (a push, a close)."""

    route: str
    times: int
    action: Callable[[Recorded], None]
    when: Callable[[Recorded], bool] | None = None


@dataclass
class _App:
    app_id: str
    public_key: str
    slug: str
    installations: set[int]


# ---- the fake ----------------------------------------------------------------------------


class FakeGitHub:
    """The fake itself; start it with ``fake_github_server()`` (or ``start``/``stop``)."""

    def __init__(self, base_url: str = DEFAULT_API, *, blob_base: str = BLOB_BASE) -> None:
        self.base_url = base_url.rstrip("/")
        url = httpx.URL(self.base_url)
        self.host = url.host
        self.prefix = url.path.rstrip("/")
        # GitHub Enterprise Server serves GraphQL at /api/graphql beside /api/v3.
        if self.prefix.endswith("/api/v3"):
            self.graphql_path = self.prefix[: -len("/v3")] + "/graphql"
        else:
            self.graphql_path = self.prefix + "/graphql"
        self.blob_base = blob_base.rstrip("/")
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: dict[str, str] = {}
        self.app: _App | None = None
        self.token_lifetime = timedelta(hours=1)
        self.issued_tokens: list[str] = []
        self.requests: list[Recorded] = []
        self.injections: list[Injection] = []
        self.hooks: list[Hook] = []
        self.rate_limit_remaining = 5000
        # Serve artifact blobs chunked, without Content-Length.
        self.blob_chunked = False
        self._ids = 1000
        self._clock = datetime(2024, 1, 1, tzinfo=UTC)
        self._routes = self._route_table()
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.router.route(host=self.host).mock(side_effect=self._handle_api)
        self.router.route(host=httpx.URL(self.blob_base).host).mock(side_effect=self._handle_blob)

    def start(self) -> None:
        self.router.start()

    def stop(self) -> None:
        self.router.stop()

    # -- set-up

    def add_token(self, token: str, login: str) -> None:
        self.tokens[token] = login

    def register_app(
        self,
        app_id: int | str,
        public_key_pem: str,
        *,
        slug: str = "reviewbot",
        installations: tuple[int, ...] = (1,),
    ) -> None:
        self.app = _App(str(app_id), public_key_pem, slug, set(installations))

    @property
    def bot_login(self) -> str:
        assert self.app is not None, "register_app first"
        return f"{self.app.slug}[bot]"

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos.setdefault(full_name, FakeRepo(full_name))

    def add_commit(
        self, full_name: str, sha: str, files: Mapping[str, str | bytes], *, truncated: bool = False
    ) -> None:
        self.repo(full_name).commits[sha] = {
            path: content.encode() if isinstance(content, str) else content
            for path, content in files.items()
        }
        if truncated:
            self.repo(full_name).truncated_trees.add(sha)

    def add_pull(self, full_name: str, pull: FakePull) -> FakePull:
        if pull.head_repo_full_name is None:
            pull.head_repo_full_name = full_name
        self.repo(full_name).pulls[pull.number] = pull
        return pull

    def add_review(
        self,
        full_name: str,
        number: int,
        *,
        user: str,
        body: str,
        comments: tuple[tuple[str, int, str], ...] = (),
        comment_user: str | None = None,
    ) -> dict[str, Any]:
        """A review already on the PR; ``comments`` are (path, line, body) inline comments."""
        pull = self.repo(full_name).pulls[number]
        review = {
            "id": self._next_id(),
            "user": _user(user),
            "body": body,
            "state": "COMMENTED",
            "commit_id": pull.head_sha,
            "submitted_at": self._now(),
        }
        pull.reviews.append(review)
        for path, line, text in comments:
            pull.review_comments.append(
                {
                    "id": self._next_id(),
                    "pull_request_review_id": review["id"],
                    "user": _user(comment_user or user),
                    "path": path,
                    "line": line,
                    "side": "RIGHT",
                    "body": text,
                    "created_at": self._now(),
                }
            )
        return review

    def add_issue_comment(self, full_name: str, number: int, *, user: str, body: str) -> int:
        comment = {
            "id": self._next_id(),
            "user": _user(user),
            "body": body,
            "created_at": self._now(),
        }
        self.repo(full_name).issue_comments.setdefault(number, []).append(comment)
        return int(comment["id"])

    def add_artifact(
        self,
        full_name: str,
        *,
        name: str,
        content: bytes,
        run_id: int = 1,
        head_branch: str = "main",
        expired: bool = False,
        from_fork: bool = False,
    ) -> int:
        repo = self.repo(full_name)
        artifact_id = self._next_id()
        repo.artifacts.append(
            {
                "id": artifact_id,
                "name": name,
                "size_in_bytes": len(content),
                "expired": expired,
                "created_at": self._now(),
                "archive_download_url": f"{self.base_url}/repos/{full_name}/actions/artifacts/"
                f"{artifact_id}/zip",
                "workflow_run": {
                    "id": run_id,
                    "head_branch": head_branch,
                    "head_sha": "h",
                    "repository_id": 1,
                    "head_repository_id": 2 if from_fork else 1,
                },
            }
        )
        repo.artifact_zips[artifact_id] = content
        return artifact_id

    # -- failures

    def fail(
        self,
        route: str,
        *,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        when: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests to ``route`` with ``status``."""
        self._check_route(route)
        payload = body if body is not None else {"message": f"fake failure {status}"}
        self.injections.append(Injection(route, times, status, payload, headers or {}, None, when))

    def raise_error(
        self,
        route: str,
        exception: type[httpx.TransportError] = httpx.ReadTimeout,
        *,
        times: int = 1,
    ) -> None:
        """Make the transport raise ``exception`` (a timeout by default) for ``route``."""
        self._check_route(route)
        self.injections.append(Injection(route, times, exception=exception))

    def secondary_rate_limit(
        self, route: str, *, retry_after: int = 1, status: int = 403, times: int = 1
    ) -> None:
        self.fail(
            route,
            status=status,
            body={"message": "You have exceeded a secondary rate limit."},
            headers={"retry-after": str(retry_after)},
            times=times,
        )

    def primary_rate_limit(self, route: str, *, reset_in: int = 600, times: int = 1) -> None:
        reset = int(datetime.now(UTC).timestamp()) + reset_in
        self.fail(
            route,
            status=403,
            body={"message": "API rate limit exceeded for installation."},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            times=times,
        )

    def before(
        self,
        route: str,
        action: Callable[[Recorded], None],
        *,
        times: int = 1,
        when: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Run ``action`` when the next ``times`` matching requests arrive, before answering.

        Changes the state between two calls of one flow, e.g. a push landing while a review
        is being written.
        """
        self._check_route(route)
        self.hooks.append(Hook(route, times, action, when))

    # -- inspection

    def requests_to(self, route: str) -> list[Recorded]:
        self._check_route(route)
        return [request for request in self.requests if request.route == route]

    @property
    def api_requests(self) -> list[Recorded]:
        """Requests to the API, without installation-token requests and blob downloads."""
        return [r for r in self.requests if r.route not in ("access_token", "blob")]

    # -- internals

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _check_route(self, route: str) -> None:
        names = {name for _, _, name, _ in self._routes} | {"graphql", "blob"}
        assert route in names, f"unknown route {route!r}; known: {sorted(names)}"

    def _route_table(
        self,
    ) -> list[tuple[str, re.Pattern[str], str, Callable[..., httpx.Response]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        table = [
            ("GET", r"/app", "app", self._get_app),
            ("POST", r"/app/installations/(?P<id>\d+)/access_tokens", "access_token", self._token),
            ("GET", r"/user", "user", self._get_user),
            ("GET", rf"{repo}/pulls/(?P<n>\d+)", "get_pull", self._get_pull),
            ("GET", rf"{repo}/pulls/(?P<n>\d+)/files", "list_files", self._list_files),
            ("GET", rf"{repo}/pulls/(?P<n>\d+)/reviews", "list_reviews", self._list_reviews),
            ("POST", rf"{repo}/pulls/(?P<n>\d+)/reviews", "create_review", self._create_review),
            ("GET", rf"{repo}/pulls/(?P<n>\d+)/comments", "list_review_comments", self._list_rc),
            ("GET", rf"{repo}/issues/(?P<n>\d+)/comments", "list_issue_comments", self._list_ic),
            ("POST", rf"{repo}/issues/(?P<n>\d+)/comments", "create_issue_comment", self._add_ic),
            ("PATCH", rf"{repo}/issues/comments/(?P<id>\d+)", "update_issue_comment", self._edit),
            ("DELETE", rf"{repo}/issues/comments/(?P<id>\d+)", "delete_issue_comment", self._del),
            ("GET", rf"{repo}/git/trees/(?P<sha>[^/]+)", "get_tree", self._get_tree),
            ("POST", rf"{repo}/check-runs", "create_check_run", self._check_run),
            (
                "GET",
                rf"{repo}/actions/runs/(?P<id>\d+)/artifacts",
                "list_run_artifacts",
                self._run_artifacts,
            ),
            ("GET", rf"{repo}/actions/artifacts", "list_artifacts", self._artifacts),
            ("GET", rf"{repo}/actions/artifacts/(?P<id>\d+)/zip", "download_artifact", self._zip),
        ]
        return [(m, re.compile(f"^{p}$"), name, handler) for m, p, name, handler in table]

    def _record(self, request: httpx.Request, route: str, path: str) -> Recorded:
        body: Any = None
        if request.content:
            try:
                body = json.loads(request.content)
            except ValueError:
                body = request.content
        recorded = Recorded(
            method=request.method,
            route=route,
            path=path,
            params=dict(parse_qsl(request.url.query.decode())),
            json=body,
            headers=request.headers,
            url=str(request.url),
        )
        self.requests.append(recorded)
        return recorded

    def _injected(self, recorded: Recorded, request: httpx.Request) -> httpx.Response | None:
        for injection in self.injections:
            if injection.route != recorded.route or injection.times <= 0:
                continue
            if injection.when is not None and not injection.when(recorded):
                continue
            injection.times -= 1
            if injection.exception is not None:
                raise injection.exception("injected failure", request=request)
            return self._json(injection.status, injection.body, headers=injection.headers)
        return None

    def _json(
        self, status: int, body: Any, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        merged = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(self.rate_limit_remaining),
            **(headers or {}),
        }
        return httpx.Response(status, json=body, headers=merged)

    def _authenticate(self, recorded: Recorded) -> str | None:
        header = recorded.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and self.app is not None:
            try:
                claims = jwt.decode(credential, self.app.public_key, algorithms=["RS256"])
            except jwt.PyJWTError:
                return None
            return "app" if str(claims.get("iss")) == self.app.app_id else None
        if scheme.lower() in ("token", "bearer"):
            if credential in self.tokens:
                return self.tokens[credential]
            if credential in self.issued_tokens and self.app is not None:
                return self.bot_login
        return None

    def _handle_api(self, request: httpx.Request) -> httpx.Response:
        self.rate_limit_remaining -= 1
        path = request.url.path
        if request.method == "POST" and path == self.graphql_path:
            recorded = self._record(request, "graphql", "/graphql")
            return self._dispatch(recorded, request, self._graphql, {}, needs_app=False)
        if not path.startswith(self.prefix + "/"):
            self._record(request, "unknown", path)
            return self._json(404, {"message": "Not Found"})
        relative = path[len(self.prefix) :]
        for method, pattern, name, handler in self._routes:
            match = pattern.match(relative)
            if match and method == request.method:
                recorded = self._record(request, name, relative)
                needs_app = name in ("app", "access_token")
                return self._dispatch(recorded, request, handler, match.groupdict(), needs_app)
        self._record(request, "unknown", relative)
        return self._json(404, {"message": "Not Found"})

    def _dispatch(
        self,
        recorded: Recorded,
        request: httpx.Request,
        handler: Callable[..., httpx.Response],
        args: dict[str, str],
        needs_app: bool,
    ) -> httpx.Response:
        for hook in self.hooks:
            if (
                hook.route == recorded.route
                and hook.times > 0
                and (hook.when is None or hook.when(recorded))
            ):
                hook.times -= 1
                hook.action(recorded)
        injected = self._injected(recorded, request)
        if injected is not None:
            return injected
        recorded.login = self._authenticate(recorded)
        if recorded.login is None or (needs_app != (recorded.login == "app")):
            return self._json(401, {"message": "Bad credentials"})
        return handler(recorded, **args)

    def _handle_blob(self, request: httpx.Request) -> httpx.Response:
        recorded = self._record(request, "blob", request.url.path)
        injected = self._injected(recorded, request)
        if injected is not None:
            return injected
        match = re.match(r"^/artifacts/(?P<repo>.+)/(?P<id>\d+)\.zip$", request.url.path)
        if not match or "sig" not in recorded.params:
            return httpx.Response(403, text="AuthenticationFailed")
        content = self.repo(match["repo"]).artifact_zips.get(int(match["id"]))
        if content is None:
            return httpx.Response(404, text="BlobNotFound")
        headers = {"content-type": "application/zip"}
        if self.blob_chunked:
            # No Content-Length: the reader must count what it receives.
            return httpx.Response(200, content=_chunks(content), headers=headers)
        return httpx.Response(200, content=content, headers=headers)

    def _pull_or_404(self, owner: str, repo: str, n: str) -> FakePull | httpx.Response:
        pull = self.repos.get(f"{owner}/{repo}", FakeRepo("")).pulls.get(int(n))
        return pull if pull is not None else self._json(404, {"message": "Not Found"})

    def _page(
        self, recorded: Recorded, items: list[Any], *, key: str | None = None
    ) -> httpx.Response:
        per_page = min(int(recorded.params.get("per_page", "30")), 100)
        page = int(recorded.params.get("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers: dict[str, str] = {}
        if page * per_page < len(items):
            next_url = httpx.URL(recorded.url).copy_merge_params({"page": str(page + 1)})
            headers["link"] = f'<{next_url}>; rel="next"'
        body: Any = {"total_count": len(items), key: chunk} if key else chunk
        return self._json(200, body, headers=headers)

    # -- REST handlers

    def _get_app(self, recorded: Recorded) -> httpx.Response:
        assert self.app is not None
        return self._json(200, {"id": int(self.app.app_id), "slug": self.app.slug})

    def _token(self, recorded: Recorded, id: str) -> httpx.Response:
        assert self.app is not None
        if int(id) not in self.app.installations:
            return self._json(404, {"message": "Not Found"})
        token = f"ghs_fake{len(self.issued_tokens)}x{self._next_id()}"
        self.issued_tokens.append(token)
        expires = datetime.now(UTC) + self.token_lifetime
        body = {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return self._json(201, body)

    def _get_user(self, recorded: Recorded) -> httpx.Response:
        return self._json(200, {"login": recorded.login, "type": "User"})

    def _get_pull(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        pull = self._pull_or_404(owner, repo, n)
        if isinstance(pull, httpx.Response):
            return pull
        changed = pull.changed_files if pull.changed_files is not None else len(pull.files)
        body = {
            "number": pull.number,
            "title": pull.title,
            "state": pull.state,
            "draft": pull.draft,
            "user": _user(pull.author),
            "labels": [{"name": label} for label in pull.labels],
            "changed_files": changed,
            "head": {
                "sha": pull.head_sha,
                "ref": pull.head_ref,
                "repo": {"full_name": pull.head_repo_full_name}
                if pull.head_repo_full_name
                else None,
            },
            "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": {"full_name": owner}},
        }
        return self._json(200, body)

    def _list_files(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        pull = self._pull_or_404(owner, repo, n)
        if isinstance(pull, httpx.Response):
            return pull
        files = [f.as_json() for f in pull.files[:LISTED_FILES_CAP]]
        return self._page(recorded, files)

    def _list_reviews(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        pull = self._pull_or_404(owner, repo, n)
        if isinstance(pull, httpx.Response):
            return pull
        return self._page(recorded, pull.reviews)

    def _list_rc(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        pull = self._pull_or_404(owner, repo, n)
        if isinstance(pull, httpx.Response):
            return pull
        return self._page(recorded, pull.review_comments)

    def _create_review(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        pull = self._pull_or_404(owner, repo, n)
        if isinstance(pull, httpx.Response):
            return pull
        body = recorded.json if isinstance(recorded.json, dict) else {}
        if body.get("event") not in ("APPROVE", "COMMENT", "REQUEST_CHANGES"):
            return self._json(422, {"message": "Unprocessable Entity", "errors": ["bad event"]})
        if len(body.get("body") or "") > 65_536:
            return self._json(422, {"message": "Body is too long"})
        files = {f.filename: f for f in pull.files}
        for comment in body.get("comments") or []:
            changed = files.get(comment.get("path"))
            lines = changed.right_lines() if changed else set()
            start = comment.get("start_line")
            if comment.get("line") not in lines or (start is not None and start not in lines):
                return self._json(
                    422,
                    {
                        "message": "Unprocessable Entity",
                        "errors": ["Line could not be resolved"],
                    },
                )
        review = {
            "id": self._next_id(),
            "user": _user(str(recorded.login)),
            "body": body.get("body") or "",
            "state": {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(
                body["event"], "COMMENTED"
            ),
            "commit_id": body.get("commit_id") or pull.head_sha,
            "submitted_at": self._now(),
        }
        pull.reviews.append(review)
        for comment in body.get("comments") or []:
            pull.review_comments.append(
                {
                    "id": self._next_id(),
                    "pull_request_review_id": review["id"],
                    "user": _user(str(recorded.login)),
                    "created_at": self._now(),
                    **comment,
                }
            )
        return self._json(200, review)

    def _list_ic(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        comments = self.repo(f"{owner}/{repo}").issue_comments.get(int(n), [])
        return self._page(recorded, comments)

    def _add_ic(self, recorded: Recorded, owner: str, repo: str, n: str) -> httpx.Response:
        comment = {
            "id": self._next_id(),
            "user": _user(str(recorded.login)),
            "body": recorded.json["body"],
            "created_at": self._now(),
        }
        self.repo(f"{owner}/{repo}").issue_comments.setdefault(int(n), []).append(comment)
        return self._json(201, comment)

    def _find_ic(self, owner: str, repo: str, id: str) -> tuple[list[dict[str, Any]], int] | None:
        for comments in self.repo(f"{owner}/{repo}").issue_comments.values():
            for index, comment in enumerate(comments):
                if comment["id"] == int(id):
                    return comments, index
        return None

    def _edit(self, recorded: Recorded, owner: str, repo: str, id: str) -> httpx.Response:
        found = self._find_ic(owner, repo, id)
        if found is None:
            return self._json(404, {"message": "Not Found"})
        comments, index = found
        comments[index]["body"] = recorded.json["body"]
        return self._json(200, comments[index])

    def _del(self, recorded: Recorded, owner: str, repo: str, id: str) -> httpx.Response:
        found = self._find_ic(owner, repo, id)
        if found is None:
            return self._json(404, {"message": "Not Found"})
        comments, index = found
        del comments[index]
        return httpx.Response(204)

    def _get_tree(self, recorded: Recorded, owner: str, repo: str, sha: str) -> httpx.Response:
        fake_repo = self.repo(f"{owner}/{repo}")
        files = fake_repo.commits.get(sha)
        if files is None:
            return self._json(404, {"message": "Not Found"})
        dirs = sorted(
            {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        )
        tree = [{"path": d, "type": "tree", "mode": "040000", "sha": "t"} for d in dirs]
        tree += [
            {"path": p, "type": "blob", "mode": "100644", "sha": "b", "size": len(c)}
            for p, c in sorted(files.items())
        ]
        body = {"sha": sha, "tree": tree, "truncated": sha in fake_repo.truncated_trees}
        return self._json(200, body)

    def _check_run(self, recorded: Recorded, owner: str, repo: str) -> httpx.Response:
        run = {"id": self._next_id(), **recorded.json}
        self.repo(f"{owner}/{repo}").check_runs.append(run)
        return self._json(201, run)

    def _run_artifacts(self, recorded: Recorded, owner: str, repo: str, id: str) -> httpx.Response:
        artifacts = [
            a for a in self.repo(f"{owner}/{repo}").artifacts if a["workflow_run"]["id"] == int(id)
        ]
        return self._page(recorded, artifacts, key="artifacts")

    def _artifacts(self, recorded: Recorded, owner: str, repo: str) -> httpx.Response:
        name = recorded.params.get("name")
        artifacts = [
            a
            for a in reversed(self.repo(f"{owner}/{repo}").artifacts)  # newest first
            if name is None or a["name"] == name
        ]
        return self._page(recorded, artifacts, key="artifacts")

    def _zip(self, recorded: Recorded, owner: str, repo: str, id: str) -> httpx.Response:
        fake_repo = self.repo(f"{owner}/{repo}")
        artifact = next((a for a in fake_repo.artifacts if a["id"] == int(id)), None)
        if artifact is None:
            return self._json(404, {"message": "Not Found"})
        if artifact["expired"]:
            return self._json(410, {"message": "Artifact has expired"})
        location = f"{self.blob_base}/artifacts/{owner}/{repo}/{id}.zip?sig=s3cr3t-signature"
        return self._json(302, None, headers={"location": location})

    # -- GraphQL

    def _graphql(self, recorded: Recorded) -> httpx.Response:
        payload = recorded.json if isinstance(recorded.json, dict) else {}
        query = str(payload.get("query") or "")
        variables = payload.get("variables") or {}
        full_name = f"{variables.get('owner')}/{variables.get('name')}"
        if full_name not in self.repos:
            error = {
                "type": "NOT_FOUND",
                "path": ["repository"],
                "message": f"Could not resolve to a Repository with the name '{full_name}'.",
            }
            return self._json(200, {"data": {"repository": None}, "errors": [error]})
        repo = self.repos[full_name]
        if "object(expression:" in query:
            return self._json(200, {"data": {"repository": self._blobs(repo, query, variables)}})
        if "reviews(" in query:
            data = {"repository": {"pullRequest": self._reviews(repo, variables)}}
            return self._json(200, {"data": data})
        return self._json(200, {"errors": [{"message": "query not supported by the fake"}]})

    def _blobs(self, repo: FakeRepo, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for alias, var in re.findall(r"(\w+): object\(expression: \$(\w+)\)", query):
            rev, _, path = str(variables[var]).partition(":")
            content = repo.commits.get(rev, {}).get(path)
            if content is None:
                result[alias] = None
                continue
            binary = b"\0" in content[:8000]
            truncated = len(content) > BLOB_TEXT_LIMIT
            text = None if binary else content[:BLOB_TEXT_LIMIT].decode(errors="replace")
            result[alias] = {
                "text": text,
                "byteSize": len(content),
                "isBinary": binary,
                "isTruncated": truncated,
            }
        return result

    def _reviews(self, repo: FakeRepo, variables: dict[str, Any]) -> dict[str, Any] | None:
        pull = repo.pulls.get(int(variables["number"]))
        if pull is None:
            return None
        # reviews(last: 100, before: cursor); a cursor is the index of a review.
        end = int(variables["before"]) if variables.get("before") else len(pull.reviews)
        start = max(0, end - 100)
        nodes = []
        for review in pull.reviews[start:end]:
            comments = [
                c for c in pull.review_comments if c["pull_request_review_id"] == review["id"]
            ]
            nodes.append(
                {
                    "author": _graphql_author(review["user"]["login"]),
                    "body": review["body"],
                    "comments": {
                        "totalCount": len(comments),
                        "nodes": [
                            {"author": _graphql_author(c["user"]["login"]), "body": c["body"]}
                            for c in comments[:100]
                        ],
                    },
                }
            )
        info = {"hasPreviousPage": start > 0, "startCursor": str(start) if nodes else None}
        return {"headRefOid": pull.head_sha, "reviews": {"pageInfo": info, "nodes": nodes}}


async def _chunks(content: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "type": "Bot" if login.endswith("[bot]") else "User"}


def _graphql_author(login: str) -> dict[str, Any]:
    # GraphQL names an App's bot account by its slug, without the "[bot]" REST shows.
    if login.endswith("[bot]"):
        return {"login": login[: -len("[bot]")], "__typename": "Bot"}
    return {"login": login, "__typename": "User"}


@contextmanager
def fake_github_server(
    base_url: str = DEFAULT_API, *, blob_base: str = BLOB_BASE
) -> Iterator[FakeGitHub]:
    """A started ``FakeGitHub``; every other host is refused (no real network in tests)."""
    fake = FakeGitHub(base_url, blob_base=blob_base)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
