"""Own the routing of webhook events: which (event, action) becomes which job, or why none.

Handlers register on a ``Router`` by decorator, as in gidgethub and bedevere. They are thin and
do no I/O: they read the raw payload dict (GitHub's payloads are looser than any strict model)
and return a ``Job`` or a ``Skip`` with the reason, which the webhook answer and the log carry.

What cannot be known from the payload is left to the pipeline: whether a PR touches
conversation API code or dependency files (``trigger="auto"`` jobs) needs its file list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reviewbot.jobs import Job, JobKind, Trigger
from reviewbot.settings import Settings

# Who may ask for a review by comment: people with write access to the repository.
COMMAND_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
COMMAND = "/codereview"
# The command ends at whitespace or the end of the body: "/codereviews" or "/codereview-x" are
# other words. Case-insensitive, because phones capitalise the first letter of a comment.
_COMMAND = re.compile(r"\A\s*/codereview(?=\s|\Z)(?P<args>[^\r\n]*)", re.IGNORECASE)
_MAX_ARGS_CHARS = 200


@dataclass(frozen=True)
class Event:
    """A verified delivery: the ``X-GitHub-Event`` name, its delivery id and the raw payload."""

    name: str
    delivery_id: str
    payload: Mapping[str, Any]

    @property
    def action(self) -> str | None:
        action = self.payload.get("action")
        return action if isinstance(action, str) else None


@dataclass(frozen=True)
class RouteContext:
    """What the handlers need from the configuration."""

    bot_login: str | None = None
    snapshot_workflow: str = "Snapshot Tests"

    @classmethod
    def from_settings(cls, settings: Settings) -> RouteContext:
        return cls(bot_login=settings.bot_login, snapshot_workflow=settings.snapshot_workflow)

    def is_bot(self, login: object) -> bool:
        """``login`` is this app's bot user; "name" and "name[bot]" both name it."""
        if not isinstance(login, str) or not self.bot_login:
            return False
        ours = self.bot_login.lower().removesuffix("[bot]")
        return login.lower().removesuffix("[bot]") == ours


@dataclass(frozen=True)
class Skip:
    """No job, and why (answered to GitHub and logged)."""

    reason: str


class PayloadError(ValueError):
    """A field the routing needs is missing or has the wrong type."""


@dataclass(frozen=True)
class Routing:
    """The router's verdict on one event."""

    jobs: tuple[Job, ...] = ()
    reasons: tuple[str, ...] = ()
    # False when no handler is registered for the (event, action).
    handled: bool = True

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


Handler = Callable[[Event, RouteContext], Job | Skip]


@dataclass
class Router:
    """Handlers keyed by (event, action); action None means every action of the event."""

    _handlers: dict[tuple[str, str | None], list[Handler]] = field(default_factory=dict)

    def register(self, event: str, action: str | None = None) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self._handlers.setdefault((event, action), []).append(handler)
            return handler

        return decorate

    def extend(self, other: Router) -> None:
        """Join another feature's router into this one."""
        for key, handlers in other._handlers.items():
            self._handlers.setdefault(key, []).extend(handlers)

    def route(self, event: Event, context: RouteContext) -> Routing:
        handlers = [
            *self._handlers.get((event.name, event.action), []),
            *self._handlers.get((event.name, None), []),
        ]
        if not handlers:
            label = f"{event.name}.{event.action}" if event.action else event.name
            return Routing(reasons=(f"event {label} is not handled",), handled=False)
        jobs: list[Job] = []
        reasons: list[str] = []
        for handler in handlers:
            outcome = handler(event, context)
            if isinstance(outcome, Skip):
                reasons.append(outcome.reason)
            else:
                jobs.append(outcome)
        return Routing(jobs=tuple(jobs), reasons=tuple(reasons))


# ---- payload access (loose, but never silently wrong) ----------------------------------------


def _object(payload: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        raise PayloadError(f"{where}{'.' if where else ''}{key} is not an object")
    return value


def _int(payload: Mapping[str, Any], key: str, where: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{where}.{key} is not an integer")
    return value


def _str(payload: Mapping[str, Any], key: str, where: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where}.{key} is not a string")
    return value


def _login(user: object) -> str | None:
    if isinstance(user, Mapping):
        login = user.get("login")
        return login if isinstance(login, str) else None
    return None


def _repository(payload: Mapping[str, Any]) -> tuple[str, str]:
    repository = _object(payload, "repository")
    full_name = _str(repository, "full_name", "repository")
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name:
        raise PayloadError(f"repository.full_name {full_name!r} is not owner/name")
    return owner, name


def _installation_id(payload: Mapping[str, Any]) -> int | None:
    # Absent on deliveries to a repository webhook (not an app); the CLI can still use a token.
    installation = payload.get("installation")
    if isinstance(installation, Mapping):
        value = installation.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _job(
    event: Event,
    *,
    kind: JobKind = "review",
    number: int | None,
    head_sha: str | None,
    trigger: Trigger,
    extra: Mapping[str, Any],
) -> Job:
    owner, repo = _repository(event.payload)
    return Job(
        kind=kind,
        delivery_id=event.delivery_id,
        owner=owner,
        repo=repo,
        number=number,
        head_sha=head_sha,
        trigger=trigger,
        installation_id=_installation_id(event.payload),
        extra={"event": event.name, "action": event.action, **extra},
    )


def _pull_request_job(event: Event, trigger: Trigger, **extra: Any) -> Job:
    pull = _object(event.payload, "pull_request")
    head = _object(pull, "head", "pull_request")
    base = pull.get("base")
    base_sha = base.get("sha") if isinstance(base, Mapping) else None
    return _job(
        event,
        number=_int(pull, "number", "pull_request"),
        head_sha=_str(head, "sha", "pull_request.head"),
        trigger=trigger,
        extra={
            "sender": _login(event.payload.get("sender")),
            "base_sha": base_sha if isinstance(base_sha, str) else None,
            **extra,
        },
    )


# ---- the rules ---------------------------------------------------------------------------------

router = Router()


@router.register("pull_request", "opened")
@router.register("pull_request", "reopened")
@router.register("pull_request", "ready_for_review")
@router.register("pull_request", "synchronize")
def pull_request_changed(event: Event, context: RouteContext) -> Job | Skip:
    """A PR to look at. Bots' PRs too: dependency bumps mostly come from bots."""
    pull = _object(event.payload, "pull_request")
    if pull.get("draft") is True:
        return Skip("draft")  # reviewed once it is marked ready (ready_for_review)
    if pull.get("state") == "closed":
        return Skip("pull request is closed")
    return _pull_request_job(event, "auto")


@router.register("pull_request", "review_requested")
def review_requested(event: Event, context: RouteContext) -> Job | Skip:
    """The bot was (re-)requested as reviewer: a fresh full review, even of a reviewed head.

    Drafts included: someone explicitly asked.
    """
    reviewer = event.payload.get("requested_reviewer")
    if reviewer is None:
        return Skip("review requested from a team, not from the bot")
    login = _login(reviewer)
    if context.bot_login is None:
        return Skip("bot login unknown: cannot tell whether the bot was requested")
    if not context.is_bot(login):
        return Skip("review requested from someone else")
    return _pull_request_job(event, "requested", requested_by=_login(event.payload.get("sender")))


def parse_command(body: object) -> str | None:
    """The arguments of a ``/codereview`` comment ("" if none), or None if it is not one."""
    if not isinstance(body, str):
        return None
    match = _COMMAND.match(body)
    if match is None:
        return None
    return match.group("args").strip()[:_MAX_ARGS_CHARS]


@router.register("issue_comment", "created")
def review_command(event: Event, context: RouteContext) -> Job | Skip:
    """``/codereview`` on a PR by someone with write access (where apps cannot be re-requested).

    The bot's own comments never trigger (no loops); neither do other bots' comments.
    """
    issue = _object(event.payload, "issue")
    if not isinstance(issue.get("pull_request"), Mapping):
        return Skip("comment is not on a pull request")
    comment = _object(event.payload, "comment")
    args = parse_command(comment.get("body"))
    if args is None:
        return Skip(f"comment is not a {COMMAND} command")
    user = comment.get("user")
    login = _login(user)
    if context.is_bot(login):
        return Skip("comment by the bot itself")
    if isinstance(user, Mapping) and user.get("type") == "Bot":
        return Skip("comment by another bot")
    association = comment.get("author_association")
    if association not in COMMAND_ASSOCIATIONS:
        return Skip(f"{COMMAND} from author association {association!s} (needs write access)")
    return _job(
        event,
        number=_int(issue, "number", "issue"),
        head_sha=None,  # a comment does not say; the pipeline reads the PR's head
        trigger="command",
        extra={"comment_id": comment.get("id"), "author": login, "args": args},
    )


@router.register("workflow_run", "completed")
def workflow_completed(event: Event, context: RouteContext) -> Job | Skip:
    """The snapshot workflow finished: compare its screenshots (handled by the snapshot job).

    ``pull_requests`` is empty for PRs from forks; the snapshot handler finds those by head.
    """
    run = _object(event.payload, "workflow_run")
    name = run.get("name")
    if name != context.snapshot_workflow:
        return Skip(f"workflow {name!r} is not the snapshot workflow")
    pulls = []
    for pull in run.get("pull_requests") or []:
        if isinstance(pull, Mapping) and isinstance(pull.get("number"), int):
            head = pull.get("head")
            pulls.append(
                {
                    "number": pull["number"],
                    "head_sha": head.get("sha") if isinstance(head, Mapping) else None,
                }
            )
    head_repository = run.get("head_repository")
    return _job(
        event,
        kind="snapshots",
        number=None,
        head_sha=_str(run, "head_sha", "workflow_run"),
        trigger="workflow_run",
        extra={
            "run_id": _int(run, "id", "workflow_run"),
            "workflow_name": name,
            "conclusion": run.get("conclusion"),
            "head_branch": run.get("head_branch"),
            "head_repository": head_repository.get("full_name")
            if isinstance(head_repository, Mapping)
            else None,
            "pull_requests": pulls,
        },
    )


@router.register("installation")
@router.register("installation_repositories")
def installation_changed(event: Event, context: RouteContext) -> Job | Skip:
    """Installs and uninstalls need no work: tokens are minted per job from the payload."""
    return Skip(f"installation {event.action or 'event'} acknowledged; nothing to review")


def route(event: Event, context: RouteContext) -> Routing:
    """Route with the built-in rules."""
    return router.route(event, context)
