"""The event router: which (event, action) makes which job, and why the others make none."""

from __future__ import annotations

from typing import Any

import pytest

from reviewbot.events import (
    COMMAND_ASSOCIATIONS,
    Event,
    PayloadError,
    RouteContext,
    Router,
    Skip,
    parse_command,
    route,
)
from reviewbot.jobs import Job
from tests.helpers_service import BOT_LOGIN, payload, pr_comment, pr_payload

CONTEXT = RouteContext(bot_login=BOT_LOGIN, snapshot_workflow="Snapshot Tests")
AUTO_ACTIONS = ("opened", "reopened", "ready_for_review", "synchronize")


def event(name: str, data: dict[str, Any], delivery_id: str = "d-1") -> Event:
    return Event(name=name, delivery_id=delivery_id, payload=data)


def only_job(name: str, data: dict[str, Any], context: RouteContext = CONTEXT) -> Job:
    routing = route(event(name, data), context)
    assert routing.handled
    [job] = routing.jobs
    return job


def skipped(name: str, data: dict[str, Any], context: RouteContext = CONTEXT) -> str:
    routing = route(event(name, data), context)
    assert routing.handled
    assert routing.jobs == ()
    return routing.reason


# ---- pull requests ------------------------------------------------------------------------


@pytest.mark.parametrize("action", AUTO_ACTIONS)
def test_pr_updates_make_an_auto_review_job(action: str) -> None:
    data = pr_payload("pull_request.synchronize", head="f" * 40)
    data["action"] = action
    job = only_job("pull_request", data)
    assert job.kind == "review"
    assert job.trigger == "auto"
    assert not job.forced
    assert (job.owner, job.repo) == ("Codertocat", "Hello-World")
    assert job.number == data["pull_request"]["number"]
    assert job.head_sha == "f" * 40
    assert job.installation_id == data["installation"]["id"]
    assert job.delivery_id == "d-1"
    assert job.extra["action"] == action
    assert job.extra["base_sha"] == data["pull_request"]["base"]["sha"]


@pytest.mark.parametrize("action", AUTO_ACTIONS)
def test_drafts_wait_until_ready(action: str) -> None:
    data = pr_payload("pull_request.opened", draft=True)
    data["action"] = action
    assert skipped("pull_request", data) == "draft"


def test_bots_pull_requests_are_reviewed_like_any_other() -> None:
    data = pr_payload("pull_request.opened")
    bot = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}
    data["pull_request"]["user"] = bot
    data["sender"] = bot
    assert only_job("pull_request", data).trigger == "auto"


def test_missing_installation_leaves_it_unknown() -> None:
    data = pr_payload("pull_request.opened")
    del data["installation"]
    assert only_job("pull_request", data).installation_id is None


@pytest.mark.parametrize("action", ["closed", "labeled", "edited", "converted_to_draft"])
def test_other_pr_actions_are_not_handled(action: str) -> None:
    data = pr_payload("pull_request.opened")
    data["action"] = action
    routing = route(event("pull_request", data), CONTEXT)
    assert not routing.handled
    assert f"pull_request.{action}" in routing.reason


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("pull_request"), "pull_request"),
        (lambda d: d["pull_request"].pop("head"), "pull_request.head"),
        (lambda d: d["pull_request"]["head"].update(sha=None), "pull_request.head.sha"),
        (lambda d: d["pull_request"].update(number="2"), "pull_request.number"),
        (lambda d: d["pull_request"].update(number=True), "pull_request.number"),
        (lambda d: d.pop("repository"), "repository"),
        (lambda d: d["repository"].update(full_name="no-slash"), "repository.full_name"),
    ],
)
def test_malformed_pr_payloads_say_what_is_missing(mutate: Any, field: str) -> None:
    data = pr_payload("pull_request.opened")
    mutate(data)
    with pytest.raises(PayloadError, match=field.replace(".", r"\.")):
        route(event("pull_request", data), CONTEXT)


# ---- re-requested review -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "requested"),
    [
        ("reviewbot[bot]", "reviewbot[bot]"),
        ("reviewbot[bot]", "ReviewBot[bot]"),
        ("reviewbot", "reviewbot[bot]"),
        ("ReviewBot[bot]", "reviewbot"),
    ],
)
def test_requesting_the_bot_makes_a_forced_review(configured: str, requested: str) -> None:
    data = payload("pull_request.review_requested")
    data["requested_reviewer"] = {"login": requested, "id": 1, "type": "Bot"}
    job = only_job("pull_request", data, RouteContext(bot_login=configured))
    assert job.trigger == "requested"
    assert job.forced
    assert job.head_sha == data["pull_request"]["head"]["sha"]
    assert job.extra["requested_by"] == data["sender"]["login"]


def test_requesting_the_bot_on_a_draft_still_reviews() -> None:
    data = payload("pull_request.review_requested")
    data["pull_request"]["draft"] = True
    data["requested_reviewer"] = {"login": BOT_LOGIN, "id": 1, "type": "Bot"}
    assert only_job("pull_request", data).trigger == "requested"


@pytest.mark.parametrize(
    "reviewer",
    [
        {"login": "octocat", "id": 583231, "type": "User"},  # the fixture's human
        {"login": "reviewbot-fan", "id": 2, "type": "User"},  # a prefix of the bot's name
        {"login": "otherbot[bot]", "id": 3, "type": "Bot"},
    ],
)
def test_requesting_someone_else_is_skipped(reviewer: dict[str, Any]) -> None:
    data = payload("pull_request.review_requested")
    data["requested_reviewer"] = reviewer
    assert "someone else" in skipped("pull_request", data)


def test_fixture_human_reviewer_is_skipped() -> None:
    assert "someone else" in skipped("pull_request", payload("pull_request.review_requested"))


def test_team_review_request_is_skipped() -> None:
    data = payload("pull_request.review_requested")
    del data["requested_reviewer"]
    data["requested_team"] = {"name": "reviewers", "id": 9}
    assert "team" in skipped("pull_request", data)


def test_unknown_bot_login_cannot_match() -> None:
    data = payload("pull_request.review_requested")
    data["requested_reviewer"] = {"login": BOT_LOGIN, "id": 1, "type": "Bot"}
    assert "bot login unknown" in skipped("pull_request", data, RouteContext(bot_login=None))


# ---- /codereview ------------------------------------------------------------------------------


@pytest.mark.parametrize("association", sorted(COMMAND_ASSOCIATIONS))
def test_codereview_from_write_access_makes_a_command_job(association: str) -> None:
    data = pr_comment("/codereview", association)
    job = only_job("issue_comment", data)
    assert job.trigger == "command"
    assert job.forced
    assert job.number == data["issue"]["number"]
    assert job.head_sha is None
    assert job.extra["comment_id"] == data["comment"]["id"]
    assert job.extra["author"] == data["comment"]["user"]["login"]


@pytest.mark.parametrize(
    "association",
    ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN", "NONE", None, "owner"],
)
def test_codereview_from_others_gets_nothing(association: str | None) -> None:
    reason = skipped("issue_comment", pr_comment("/codereview", association))
    assert "write access" in reason


def test_the_bots_own_comment_never_triggers() -> None:
    for login in (BOT_LOGIN, "ReviewBot[bot]"):
        data = pr_comment("/codereview", "OWNER", login=login, type="Bot")
        assert "the bot itself" in skipped("issue_comment", data)


def test_other_bots_comments_do_not_trigger() -> None:
    data = pr_comment("/codereview", "COLLABORATOR", login="helper[bot]", type="Bot")
    assert "another bot" in skipped("issue_comment", data)


def test_comment_on_an_issue_is_not_a_command() -> None:
    data = pr_comment("/codereview")
    del data["issue"]["pull_request"]
    assert "not on a pull request" in skipped("issue_comment", data)


def test_fixture_issue_comment_is_skipped() -> None:
    # The recorded payload: a plain comment on an issue.
    assert "not on a pull request" in skipped("issue_comment", payload("issue_comment.created"))


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("/codereview", ""),
        ("/codereview\n", ""),
        ("  /codereview", ""),
        ("\n\n/codereview please", "please"),
        ("/codereview\tagain\nmore text", "again"),
        ("/CodeReview", ""),
        ("/codereview  focus on deps ", "focus on deps"),
    ],
)
def test_command_bodies(body: str, args: str) -> None:
    assert parse_command(body) == args
    assert only_job("issue_comment", pr_comment(body)).extra["args"] == args


@pytest.mark.parametrize(
    "body",
    [
        "",
        "codereview",
        "/codereviews",
        "/codereview-now",
        "/codereview.",
        "please /codereview",
        "> /codereview",
        "`/codereview`",
        "/code review",
        None,
        42,
    ],
)
def test_non_command_bodies(body: object) -> None:
    assert parse_command(body) is None
    assert "not a /codereview command" in skipped("issue_comment", pr_comment(body))


def test_command_arguments_are_bounded() -> None:
    assert len(parse_command("/codereview " + "x" * 10_000) or "") == 200


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edited_or_deleted_comments_are_not_handled(action: str) -> None:
    data = pr_comment("/codereview")
    data["action"] = action
    assert not route(event("issue_comment", data), CONTEXT).handled


# ---- workflow runs, installations -------------------------------------------------------------


def test_snapshot_workflow_completion_makes_a_snapshot_job() -> None:
    data = payload("workflow_run.completed")
    data["workflow_run"]["name"] = "Snapshot Tests"
    job = only_job("workflow_run", data)
    run = data["workflow_run"]
    assert job.kind == "snapshots"
    assert job.trigger == "workflow_run"
    assert job.head_sha == run["head_sha"]
    assert job.number is None
    assert job.coalesce_key is None
    assert job.extra["run_id"] == run["id"]
    assert job.extra["workflow_name"] == "Snapshot Tests"
    assert job.extra["pull_requests"] == [
        {"number": pr["number"], "head_sha": pr["head"]["sha"]} for pr in run["pull_requests"]
    ]


def test_snapshot_workflow_name_is_configurable() -> None:
    data = payload("workflow_run.completed")
    data["workflow_run"]["name"] = "Visual"
    assert only_job("workflow_run", data, RouteContext(snapshot_workflow="Visual")).kind == (
        "snapshots"
    )
    assert "not the snapshot workflow" in skipped("workflow_run", data)


def test_fork_runs_without_pull_requests_still_make_a_job() -> None:
    data = payload("workflow_run.completed")
    data["workflow_run"]["name"] = "Snapshot Tests"
    data["workflow_run"]["pull_requests"] = []
    assert only_job("workflow_run", data).extra["pull_requests"] == []


def test_other_workflow_actions_are_not_handled() -> None:
    data = payload("workflow_run.completed")
    data["action"] = "requested"
    assert not route(event("workflow_run", data), CONTEXT).handled


@pytest.mark.parametrize("action", ["created", "deleted", "suspend"])
def test_installation_events_are_acknowledged(action: str) -> None:
    data = payload("installation.created")
    data["action"] = action
    assert "nothing to review" in skipped("installation", data)


# ---- the router itself ------------------------------------------------------------------------


def test_router_dispatches_by_event_and_action_and_joins() -> None:
    first, second = Router(), Router()
    calls: list[str] = []

    @first.register("thing", "made")
    def made(event: Event, context: RouteContext) -> Job | Skip:
        calls.append("made")
        return Skip("made")

    @second.register("thing")
    def any_action(event: Event, context: RouteContext) -> Job | Skip:
        calls.append("any")
        return Skip("any")

    first.extend(second)
    routing = first.route(event("thing", {"action": "made"}), CONTEXT)
    assert routing.reasons == ("made", "any")
    assert calls == ["made", "any"]
    other = first.route(event("thing", {"action": "broken"}), CONTEXT)
    assert other.reasons == ("any",)
    assert not first.route(event("other", {}), CONTEXT).handled
