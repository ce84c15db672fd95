"""``Tasks``: what a worker decides for one job, against the fake GitHub and the real pipeline.

Called directly (no queue, no app): which jobs are skipped and why, which are reviewed, how
GitHub's failures become retryable or permanent job errors, and the give-up note.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reviewbot.github import delivery_marker
from reviewbot.jobs import Job, PermanentJobError, TransientJobError, Trigger
from reviewbot.publish import FAILURE_MARKER
from reviewbot.settings import Settings
from reviewbot.tasks import Tasks
from tests.appkey import AppKey, new_app_key
from tests.fakegithub import FakeGitHub, FakePull, Recorded
from tests.fakeregistry import NPM, PYPI, FakeRegistry
from tests.helpers_service import (
    BOT_LOGIN,
    FINDING_MARKER,
    SEND_LINE,
    SEND_WITHOUT_RUN,
    make_settings,
    open_pull,
)

FULL_NAME = "acme-corp/agent-shell"
OWNER, REPO = FULL_NAME.split("/")
NUMBER = 5
INSTALLATION = 9
APP_ID = 777
BASE = "b" * 40
HEAD = "c" * 40
OLDER = "a" * 40
FORCED: tuple[Trigger, ...] = ("requested", "command")


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return new_app_key()


@pytest.fixture
def github(fake_github: FakeGitHub, app_key: AppKey) -> FakeGitHub:
    fake_github.register_app(APP_ID, app_key.public_pem, installations=(INSTALLATION,))
    FakeRegistry(fake_github.router)
    open_pull(
        fake_github,
        FULL_NAME,
        NUMBER,
        base=BASE,
        head=HEAD,
        files={"src/chat.ts": SEND_WITHOUT_RUN},
    )
    return fake_github


def settings_for(tmp_path: Path, key: AppKey, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "private_key": key.private_pem,
        "npm_registry_url": NPM,
        "pypi_url": PYPI,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", **values)


@pytest.fixture
async def tasks(tmp_path: Path, app_key: AppKey) -> AsyncIterator[Tasks]:
    tasks = Tasks(settings_for(tmp_path, app_key))
    yield tasks
    await tasks.aclose()


def job(
    trigger: Trigger = "auto",
    *,
    head: str | None = HEAD,
    number: int | None = NUMBER,
    installation: int | None = INSTALLATION,
    delivery: str = "delivery-1",
) -> Job:
    return Job(
        kind="review",
        delivery_id=delivery,
        owner=OWNER,
        repo=REPO,
        number=number,
        head_sha=None if trigger == "command" else head,
        trigger=trigger,
        installation_id=installation,
    )


def pull(fake: FakeGitHub) -> FakePull:
    return fake.repo(FULL_NAME).pulls[NUMBER]


def routes(fake: FakeGitHub) -> list[str]:
    return [r.route for r in fake.api_requests]


# ---- skipped before anything is analysed --------------------------------------------------------


@pytest.mark.parametrize("trigger", ["auto", *FORCED])
async def test_closed_pull_request_is_skipped_after_one_read(
    tasks: Tasks, github: FakeGitHub, trigger: Trigger
) -> None:
    pull(github).state = "closed"
    result = await tasks.review(job(trigger))
    assert result.skipped == "pull request is closed" and result.posted is None
    assert routes(github) == ["get_pull"]


async def test_draft_waits_for_an_automatic_trigger(tasks: Tasks, github: FakeGitHub) -> None:
    pull(github).draft = True
    result = await tasks.review(job("auto"))
    assert result.skipped is not None and "draft" in result.skipped
    assert routes(github) == ["get_pull"]


@pytest.mark.parametrize("trigger", FORCED)
async def test_draft_is_reviewed_when_someone_asks(
    tasks: Tasks, github: FakeGitHub, trigger: Trigger
) -> None:
    pull(github).draft = True
    result = await tasks.review(job(trigger))
    assert result.skipped is None
    [review] = pull(github).reviews
    assert result.posted == review["id"] and review["commit_id"] == HEAD


async def test_automatic_job_for_an_older_head_reviews_the_current_one(
    tasks: Tasks, github: FakeGitHub
) -> None:
    # Deliveries arrive out of order: a late redelivery of an old push can be the only job
    # left for the PR, so it must not count on "a newer job" reviewing the current head.
    result = await tasks.review(job("auto", head=OLDER))
    assert result.skipped is None
    [review] = pull(github).reviews
    assert review["commit_id"] == HEAD


async def test_requested_job_for_an_older_head_reviews_the_current_one(
    tasks: Tasks, github: FakeGitHub
) -> None:
    result = await tasks.review(job("requested", head=OLDER))
    assert result.skipped is None
    [review] = pull(github).reviews
    assert review["commit_id"] == HEAD
    assert f"<!-- reviewbot:review head={HEAD} -->" in review["body"]


# ---- skipped right before posting ---------------------------------------------------------------


async def test_a_head_already_reviewed_is_skipped_for_auto_and_reviewed_again_when_asked(
    tasks: Tasks, github: FakeGitHub
) -> None:
    github.add_review(
        FULL_NAME, NUMBER, user=BOT_LOGIN, body=f"<!-- reviewbot:review head={HEAD} -->"
    )
    auto = await tasks.review(job("auto", delivery="d-auto"))
    assert auto.skipped == f"head {HEAD[:12]} was already reviewed"
    forced = await tasks.review(job("requested", delivery="d-requested"))
    assert forced.skipped is None and len(pull(github).reviews) == 2


async def test_a_review_by_someone_else_does_not_count_as_the_bots(
    tasks: Tasks, github: FakeGitHub
) -> None:
    github.add_review(
        FULL_NAME, NUMBER, user="mallory", body=f"<!-- reviewbot:review head={HEAD} -->"
    )
    result = await tasks.review(job("auto"))
    assert result.skipped is None and len(pull(github).reviews) == 2


@pytest.mark.parametrize("trigger", ["auto", *FORCED])
async def test_a_delivery_already_answered_is_never_answered_twice(
    tasks: Tasks, github: FakeGitHub, trigger: Trigger
) -> None:
    # The bot's earlier review of an older head carries this delivery's marker: posted
    # before a crash kept the job from being marked done.
    github.add_review(
        FULL_NAME,
        NUMBER,
        user=BOT_LOGIN,
        body=f"<!-- reviewbot:review head={OLDER} -->\n{delivery_marker('d-7')}",
    )
    result = await tasks.review(job(trigger, delivery="d-7"))
    assert result.skipped == "this delivery was already answered"
    assert github.requests_to("create_review") == []


def is_reviews_query(recorded: Recorded) -> bool:
    # The previous-reviews query: the last read before posting.
    return "reviews(" in str(recorded.json.get("query"))


async def test_head_moved_after_the_analysis_retries_instead_of_posting(
    tasks: Tasks, github: FakeGitHub
) -> None:
    def push(_: Recorded) -> None:
        github.add_commit(FULL_NAME, OLDER, github.repo(FULL_NAME).commits[HEAD])
        pull(github).head_sha = OLDER

    github.before("graphql", push, when=is_reviews_query)
    with pytest.raises(TransientJobError, match="moved while it was reviewed"):
        await tasks.review(job("auto"))

    pull(github).head_sha = HEAD
    github.before("graphql", push, when=is_reviews_query)
    with pytest.raises(TransientJobError, match="moved while it was reviewed"):
        await tasks.review(job("command"))
    assert github.requests_to("create_review") == []


# ---- what gets posted ---------------------------------------------------------------------------


async def test_review_is_posted_with_markers_and_an_inline_finding(
    tasks: Tasks, github: FakeGitHub
) -> None:
    result = await tasks.review(job("auto", delivery="d-42"))
    [review] = pull(github).reviews
    assert result.posted == review["id"] and result.outcome is None
    assert review["user"]["login"] == BOT_LOGIN
    assert review["body"].rstrip().endswith(delivery_marker("d-42"))
    [comment] = pull(github).review_comments
    assert (comment["path"], comment["line"]) == ("src/chat.ts", SEND_LINE)
    assert FINDING_MARKER.search(comment["body"])


async def test_dry_run_returns_the_review_and_changes_nothing(
    tasks: Tasks, github: FakeGitHub
) -> None:
    result = await tasks.review(job("auto"), dry_run=True)
    assert result.posted is None and result.skipped is None and result.outcome is not None
    review = result.outcome.review
    assert review.head == HEAD
    assert [(f.rule, f.path, f.line) for f in review.findings] == [
        ("conversation-send-missing-run", "src/chat.ts", SEND_LINE)
    ]
    assert all(r.method == "GET" or r.route == "graphql" for r in github.api_requests)
    assert pull(github).reviews == []


async def test_auto_job_on_an_unrelated_pr_is_skipped_after_reading_its_files(
    tasks: Tasks, github: FakeGitHub
) -> None:
    pull(github).files = []
    result = await tasks.review(job("auto"))
    assert result.skipped == "touches neither agent-server conversation code nor dependencies"
    assert "create_review" not in routes(github)


# ---- acting as whom -----------------------------------------------------------------------------


async def test_the_delivery_installation_token_is_minted_once_per_process(
    tasks: Tasks, github: FakeGitHub
) -> None:
    await tasks.review(job("auto", delivery="d-1"))
    await tasks.review(job("requested", delivery="d-2"))
    [mint] = github.requests_to("access_token")
    assert mint.path == f"/app/installations/{INSTALLATION}/access_tokens"
    assert len(pull(github).reviews) == 2


@pytest.mark.parametrize(
    ("installation", "app_id", "reason"),
    [
        (None, APP_ID, "names no App installation and GITHUB_TOKEN is not set"),
        (INSTALLATION, None, "REVIEWBOT_APP_ID is not set"),
    ],
    ids=["no-installation", "no-app"],
)
async def test_without_an_installation_or_app_the_job_fails_permanently(
    tmp_path: Path,
    app_key: AppKey,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    installation: int | None,
    app_id: int | None,
    reason: str,
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("REVIEWBOT_GITHUB_TOKEN", raising=False)
    tasks = Tasks(settings_for(tmp_path, app_key, app_id=app_id))
    with pytest.raises(PermanentJobError, match=reason):
        await tasks.handle(job("auto", installation=installation))
    assert github.requests == []


async def test_without_an_installation_a_github_token_is_used(
    tmp_path: Path, app_key: AppKey, github: FakeGitHub
) -> None:
    github.add_token("ghp_replaytoken0123456789", "ci-user")
    settings = settings_for(
        tmp_path, app_key, github_token="ghp_replaytoken0123456789", bot_login=None
    )
    tasks = Tasks(settings)
    try:
        await tasks.handle(job("auto", installation=None))
    finally:
        await tasks.aclose()
    [review] = pull(github).reviews
    assert review["user"]["login"] == "ci-user"
    assert github.requests_to("access_token") == []
    # Whose earlier reviews count is the token's own login, read from GitHub.
    assert github.requests_to("user")


async def test_missing_number_is_a_permanent_error(tasks: Tasks, github: FakeGitHub) -> None:
    with pytest.raises(PermanentJobError, match="pull request number"):
        await tasks.handle(job("auto", number=None))
    assert github.requests == []


# ---- GitHub's failures as job errors -------------------------------------------------------------


async def test_a_missing_pull_request_is_permanent(tasks: Tasks, github: FakeGitHub) -> None:
    with pytest.raises(PermanentJobError, match="404"):
        await tasks.handle(job("auto", number=404))


async def test_a_rate_limit_is_retryable_with_githubs_delay(
    tasks: Tasks, github: FakeGitHub
) -> None:
    # Longer than the gateway waits by itself: the job is retried instead, after Retry-After.
    github.secondary_rate_limit("get_pull", retry_after=120)
    with pytest.raises(TransientJobError) as raised:
        await tasks.handle(job("auto"))
    assert raised.value.retry_after == 120
    assert pull(github).reviews == []


# ---- giving up ----------------------------------------------------------------------------------


async def test_give_up_leaves_one_failure_note_edited_in_place(
    tasks: Tasks, github: FakeGitHub
) -> None:
    leaked = "ghs_" + "Z" * 36  # an installation token in an error message
    await tasks.give_up(job("auto"), TransientJobError(f"GitHub said no to {leaked}"))
    await tasks.give_up(job("auto"), TransientJobError("still down"))
    [note] = github.repo(FULL_NAME).issue_comments[NUMBER]
    assert note["user"]["login"] == BOT_LOGIN
    assert FAILURE_MARKER in note["body"] and "still down" in note["body"]
    assert f"`{HEAD}`" in note["body"]
    first_body = github.requests_to("create_issue_comment")[0].json["body"]
    assert leaked not in first_body and "GitHub said no" in first_body
    assert len(github.requests_to("update_issue_comment")) == 1


async def test_give_up_on_a_snapshot_job_posts_nothing(tasks: Tasks, github: FakeGitHub) -> None:
    snapshot = Job(
        kind="snapshots",
        delivery_id="d-snap",
        owner=OWNER,
        repo=REPO,
        number=None,
        head_sha=HEAD,
        trigger="workflow_run",
        installation_id=INSTALLATION,
        extra={"run_id": 1},
    )
    await tasks.give_up(snapshot, RuntimeError("artifact missing"))
    assert github.requests == []
