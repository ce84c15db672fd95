"""The GitHub gateway against the shared fake GitHub (respx): auth, reads, posting, retries."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import timedelta

import httpx
import jwt
import pytest
from githubkit.cache import MemCacheStrategy

from reviewbot.github import (
    MAX_BODY_CHARS,
    ArtifactTooLarge,
    CommentsRejected,
    GitHubError,
    GitHubGateway,
    GitHubTransientError,
    PullRequest,
    PullRequestSource,
    RetryPolicy,
    finding_marker,
    fit_body,
)
from reviewbot.models import FileStatus, InlineComment, ReviewEvent
from reviewbot.source import MAX_GUIDELINE_FILES, SourceError
from tests.appkey import AppKey, new_app_key
from tests.fakegithub import (
    BLOB_TEXT_LIMIT,
    FakeFile,
    FakeGitHub,
    FakePull,
    fake_github_server,
)

REPO = "octo/app"
TOKEN = "ghp_user_token_0123456789"


# ---- helpers -----------------------------------------------------------------------------


_key = new_app_key


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return _key()


class Sleeps:
    """An injected sleep that records waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def gateway(fake_github: FakeGitHub, sleeps: Sleeps) -> GitHubGateway:
    fake_github.add_token(TOKEN, "octocat")
    return GitHubGateway.for_token(TOKEN, timeout_s=5, sleep=sleeps)


def _app_gateway(
    fake: FakeGitHub, key: AppKey, *, token_cache: MemCacheStrategy | None = None
) -> GitHubGateway:
    fake.register_app(4242, key.public_pem, slug="reviewbot", installations=(7,))
    return GitHubGateway.for_installation(
        4242,
        key.private_pem,
        7,
        base_url=fake.base_url,
        timeout_s=5,
        token_cache=token_cache,
        sleep=Sleeps(),
    )


def _pull(fake: FakeGitHub, files: list[FakeFile] | None = None, **kwargs: object) -> FakePull:
    pull = FakePull(1, "head1", "base1", files=files or [], **kwargs)  # type: ignore[arg-type]
    return fake.add_pull(REPO, pull)


MODIFIED_PATCH = "@@ -1,3 +1,4 @@\n a = 1\n-b = 2\n+b = 3\n+c = 4\n d = 5\n"


# ---- authentication ----------------------------------------------------------------------


async def test_app_auth_exchanges_a_jwt_for_an_installation_token_and_caches_it(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github, title="First")

    first = await gateway.pull_request("octo", "app", 1)
    second = await gateway.pull_request("octo", "app", 1)

    assert first == second
    assert first.title == "First"
    token_requests = fake_github.requests_to("access_token")
    assert len(token_requests) == 1
    scheme, _, credential = token_requests[0].headers["authorization"].partition(" ")
    claims = jwt.decode(credential, app_key.public_pem, algorithms=["RS256"])
    assert scheme == "Bearer"
    assert claims["iss"] == "4242"
    assert claims["exp"] - claims["iat"] <= 600  # GitHub refuses JWTs valid over 10 minutes
    issued = fake_github.issued_tokens[0]
    reads = fake_github.requests_to("get_pull")
    assert [r.headers["authorization"] for r in reads] == [f"token {issued}"] * 2
    assert [r.login for r in reads] == ["reviewbot[bot]"] * 2
    assert gateway.token_requests == 1
    assert gateway.calls == 2


async def test_installation_token_is_refreshed_when_it_is_about_to_expire(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github)
    # Tokens that expire within a minute are not trusted for another request.
    fake_github.token_lifetime = timedelta(seconds=30)

    await gateway.pull_request("octo", "app", 1)
    await gateway.pull_request("octo", "app", 1)

    assert len(fake_github.issued_tokens) == 2
    used = [r.headers["authorization"] for r in fake_github.requests_to("get_pull")]
    assert used == [f"token {token}" for token in fake_github.issued_tokens]


async def test_each_gateway_has_its_own_token_cache_unless_one_is_shared(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    _pull(fake_github)
    for gateway in (_app_gateway(fake_github, app_key), _app_gateway(fake_github, app_key)):
        await gateway.pull_request("octo", "app", 1)
    assert len(fake_github.issued_tokens) == 2

    shared = MemCacheStrategy()
    for _ in range(2):
        gateway = _app_gateway(fake_github, app_key, token_cache=shared)
        await gateway.pull_request("octo", "app", 1)
    assert len(fake_github.issued_tokens) == 3


async def test_app_slug_is_read_with_the_jwt_and_names_the_bot(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)

    assert await gateway.app_slug() == "reviewbot"
    assert await gateway.bot_login() == "reviewbot[bot]"

    requests = fake_github.requests_to("app")
    assert len(requests) == 1  # cached
    assert requests[0].headers["authorization"].startswith("Bearer ")
    assert requests[0].login == "app"
    assert fake_github.requests_to("access_token") == []


async def test_a_key_github_does_not_know_is_a_permanent_error(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    fake_github.register_app(4242, app_key.public_pem, installations=(7,))
    gateway = GitHubGateway.for_installation(4242, _key().private_pem, 7, sleep=Sleeps())
    _pull(fake_github)

    with pytest.raises(GitHubError) as raised:
        await gateway.pull_request("octo", "app", 1)

    assert not isinstance(raised.value, GitHubTransientError)
    assert raised.value.status == 401
    assert fake_github.requests_to("get_pull") == []


async def test_token_auth_sends_the_token_and_asks_github_who_it_is(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)

    await gateway.pull_request("octo", "app", 1)

    assert fake_github.requests_to("get_pull")[0].headers["authorization"] == f"token {TOKEN}"
    assert await gateway.bot_login() == "octocat"
    assert await gateway.bot_login() == "octocat"
    assert len(fake_github.requests_to("user")) == 1
    with pytest.raises(GitHubError, match="App credentials"):
        await gateway.app_slug()


async def test_a_gateway_block_reuses_one_client(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github, title="Pooled")

    async with gateway as entered:
        first = await entered.pull_request("octo", "app", 1)
        second = await entered.pull_request("octo", "app", 1)

    assert first.title == second.title == "Pooled"
    assert gateway.calls == 2


async def test_a_failed_token_request_is_retried_even_before_a_post(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github)
    fake_github.fail("access_token", status=502)

    await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="COMMENT")

    assert len(fake_github.requests_to("access_token")) == 2
    assert len(fake_github.requests_to("create_review")) == 1
    assert gateway.token_requests == 2 and gateway.calls == 1


async def test_token_auth_with_a_known_login_does_not_ask(
    fake_github: FakeGitHub,
) -> None:
    fake_github.add_token(TOKEN, "octocat")
    gateway = GitHubGateway.for_token(TOKEN, login="github-actions[bot]")

    assert await gateway.bot_login() == "github-actions[bot]"
    assert fake_github.requests == []


# ---- reading a pull request --------------------------------------------------------------


async def test_pull_request_fields(fake_github: FakeGitHub, gateway: GitHubGateway) -> None:
    pull = _pull(
        fake_github,
        files=[FakeFile("a.py", patch=MODIFIED_PATCH)],
        title="Add c",
        draft=True,
        labels=["deps", "ui"],
        author="mona",
        base_ref="release",
        head_ref="topic",
    )
    pull.head_repo_full_name = None  # GitHub sends head.repo null once the fork is deleted

    pr = await gateway.pull_request("octo", "app", 1)

    assert (pr.number, pr.title, pr.state, pr.draft) == (1, "Add c", "open", True)
    assert (pr.head_sha, pr.base_sha, pr.base_ref, pr.head_ref) == (
        "head1",
        "base1",
        "release",
        "topic",
    )
    assert pr.head_repo_full_name is None
    assert pr.author_login == "mona"
    assert pr.labels == ("deps", "ui")
    assert pr.changed_files == 1
    assert await gateway.get_pull_request_head("octo", "app", 1) == "head1"


async def test_pr_files_pages_through_more_than_100_files(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    names = [f"src/f{i:03}.py" for i in range(250)]
    _pull(fake_github, files=[FakeFile.added(name, f"n = {i}\n") for i, name in enumerate(names)])

    files, notes = await gateway.pr_files("octo", "app", 1)

    assert [f.path for f in files] == names
    assert files[42].added == {1: "n = 42"}
    assert notes == []
    pages = fake_github.requests_to("list_files")
    assert len(pages) == 3
    assert all(page.params.get("per_page") == "100" for page in pages)
    assert gateway.calls == 3


@pytest.mark.parametrize(
    ("github_status", "status"),
    [
        ("added", FileStatus.ADDED),
        ("removed", FileStatus.DELETED),
        ("modified", FileStatus.MODIFIED),
        ("renamed", FileStatus.RENAMED),
        ("copied", FileStatus.ADDED),
        ("changed", FileStatus.MODIFIED),
        ("unchanged", FileStatus.MODIFIED),
    ],
)
async def test_pr_files_maps_every_github_status(
    fake_github: FakeGitHub, gateway: GitHubGateway, github_status: str, status: FileStatus
) -> None:
    previous = "old/a.py" if github_status in ("renamed", "copied") else None
    _pull(fake_github, files=[FakeFile("a.py", github_status, MODIFIED_PATCH, previous)])

    [changed], notes = await gateway.pr_files("octo", "app", 1)

    assert changed.status is status
    assert changed.old_path == (previous if github_status == "renamed" else None)
    assert changed.added == {2: "b = 3", 3: "c = 4"}
    assert changed.removed == {2: "b = 2"}
    assert changed.diff_lines == {1, 2, 3, 4}
    assert notes == []


async def test_files_without_a_patch(fake_github: FakeGitHub, gateway: GitHubGateway) -> None:
    _pull(
        fake_github,
        files=[
            FakeFile("huge.sql", "modified", None, additions=90_000, deletions=3),
            FakeFile("logo.png", "added", None),
            FakeFile("new/name.py", "renamed", None, previous_filename="old/name.py"),
            FakeFile("run.sh", "changed", None),
        ],
    )

    files, notes = await gateway.pr_files("octo", "app", 1)

    huge, logo, renamed, mode = files
    assert notes == ["GitHub sent no diff for huge.sql (binary or too large)"]
    assert huge.note is not None and not huge.is_binary
    assert logo.is_binary and logo.note is None
    assert renamed.old_path == "old/name.py" and not renamed.is_binary and renamed.note is None
    assert not mode.is_binary and mode.note is None
    assert all(not f.added for f in files)


async def test_github_lists_at_most_3000_files(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    files = [FakeFile.added(f"f{i}.txt", "x\n") for i in range(3_005)]
    _pull(fake_github, files=files)

    pr = await gateway.pull_request("octo", "app", 1)
    listed, notes = await gateway.pr_files("octo", "app", 1, changed_files=pr.changed_files)
    _, notes_without_total = await gateway.pr_files("octo", "app", 1)

    assert len(listed) == 3_000
    assert notes == [
        "GitHub lists at most 3,000 files; this PR changes 3,005, the rest were not reviewed"
    ]
    assert notes_without_total == [
        "GitHub lists at most 3,000 files; this PR changes 3,000 or more, the rest were not "
        "reviewed"
    ]
    assert len(fake_github.requests_to("list_files")) == 60  # 30 pages each time


async def test_pr_files_below_the_cap_has_no_note(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github, files=[FakeFile.added(f"f{i}.txt", "x\n") for i in range(2_999)])

    listed, notes = await gateway.pr_files("octo", "app", 1, changed_files=2_999)

    assert len(listed) == 2_999
    assert notes == []


# ---- file contents: batched GraphQL ------------------------------------------------------


async def test_read_files_uses_one_graphql_query_per_50_files(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    head = {f"src/m{i}.py": f"value = {i}\n" for i in range(120)}
    head['odd "name" $x.py'] = "quoted = True\n"
    head["blob.bin"] = b"\x89PNG\0\0data"
    head["big.json"] = "[" + "1," * BLOB_TEXT_LIMIT + "1]"
    fake_github.add_commit(REPO, "head1", head)
    fake_github.add_commit(REPO, "base1", {"src/m0.py": "value = -1\n"})
    _pull(fake_github)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=lambda _: False)
    wanted: list[tuple[str, str]] = [(path, "head") for path in head]
    wanted += [("src/m0.py", "base"), ("src/m1.py", "base"), ("missing.py", "head")]

    texts = await source.read_files(wanted)  # type: ignore[arg-type]

    assert texts[("src/m7.py", "head")] == "value = 7\n"
    assert texts[('odd "name" $x.py', "head")] == "quoted = True\n"
    assert texts[("src/m0.py", "base")] == "value = -1\n"
    # Missing, binary and truncated files are left out, not guessed.
    left_out = {("blob.bin", "head"), ("big.json", "head"), ("missing.py", "head")}
    left_out.add(("src/m1.py", "base"))
    assert set(texts) == set(wanted) - left_out
    queries = fake_github.requests_to("graphql")
    assert len(queries) == math.ceil(len(wanted) / 50)
    # Paths travel as variables, never spliced into the query text.
    assert all('"name"' not in q.json["query"] for q in queries)
    assert queries[0].json["variables"]["e0"] == "head1:src/m0.py"
    assert gateway.calls == 1 + len(queries)  # get PR + the batches


async def test_read_files_of_nothing_costs_no_query(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=lambda _: False)

    assert await source.read_files([]) == {}
    assert fake_github.requests_to("graphql") == []


async def test_read_files_on_a_repository_github_cannot_see_notes_it(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    pr = PullRequest(1, "t", "open", False, "head1", "base1", "main", "x", None, "mona", (), 1)
    source = PullRequestSource(gateway, "ghost", "repo", 1, pr, is_guideline=lambda _: False)

    texts = await source.read_files([("a.py", "head")])

    assert texts == {}
    assert len(source.notes) == 1
    assert "Could not resolve to a Repository" in source.notes[0]


# ---- guideline files ---------------------------------------------------------------------


def _is_skill(path: str) -> bool:
    return path.startswith(".agents/skills/") and path.endswith(".md")


async def test_guideline_files_read_one_tree_and_one_batch_per_side(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    fake_github.add_commit(
        REPO,
        "head1",
        {
            ".agents/skills/review.md": "head rules\n",
            ".agents/skills/new.md": "added in the PR\n",
            ".agents/skills/notes.txt": "not a guideline\n",
            "src/app.py": "print()\n",
        },
    )
    fake_github.add_commit(REPO, "base1", {".agents/skills/review.md": "base rules\n"})
    _pull(fake_github)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    head = await source.guideline_files("head")
    base = await source.guideline_files("base")

    assert head == {
        ".agents/skills/review.md": "head rules\n",
        ".agents/skills/new.md": "added in the PR\n",
    }
    assert base == {".agents/skills/review.md": "base rules\n"}
    trees = fake_github.requests_to("get_tree")
    assert [(t.path, t.params) for t in trees] == [
        ("/repos/octo/app/git/trees/head1", {"recursive": "1"}),
        ("/repos/octo/app/git/trees/base1", {"recursive": "1"}),
    ]
    assert len(fake_github.requests_to("graphql")) == 2
    assert source.notes == []


async def test_guideline_files_are_bounded_in_number_and_noted(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    count = MAX_GUIDELINE_FILES + 5
    files = {f".agents/skills/s{i:03}.md": f"rule {i}\n" for i in range(count)}
    fake_github.add_commit(REPO, "head1", files, truncated=True)
    _pull(fake_github)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    head = await source.guideline_files("head")

    assert sorted(head) == sorted(files)[:MAX_GUIDELINE_FILES]
    assert len(fake_github.requests_to("graphql")) == math.ceil(MAX_GUIDELINE_FILES / 50)
    assert any("only part of the files" in note for note in source.notes)
    assert any(f"only the first {MAX_GUIDELINE_FILES}" in note for note in source.notes)


# ---- the change source -------------------------------------------------------------------


async def test_changeset_from_a_pull_request(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    fake_github.add_commit(REPO, "head1", {"a.py": "a\n", ".agents/skills/r.md": "r\n"})
    _pull(
        fake_github,
        files=[FakeFile("a.py", patch=MODIFIED_PATCH), FakeFile("big.sql", additions=10**5)],
        title="Tidy",
    )
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    change = await source.changeset()
    guidelines = await source.guideline_files("head")

    assert (change.base, change.head, change.title) == ("base1", "head1", "Tidy")
    assert [f.path for f in change.files] == ["a.py", "big.sql"]
    assert change.notes == ["GitHub sent no diff for big.sql (binary or too large)"]
    assert change.head_paths == (".agents/skills/r.md", "a.py")
    assert guidelines == {".agents/skills/r.md": "r\n"}
    assert len(fake_github.requests_to("get_tree")) == 1  # shared by both


async def test_a_full_review_costs_few_api_calls(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    files = [FakeFile.added(f"src/f{i}.py", f"v = {i}\n") for i in range(60)]
    fake_github.add_commit(REPO, "head1", {f.filename: "v\n" for f in files})
    fake_github.add_commit(REPO, "base1", {})
    _pull(fake_github, files=files)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    change = await source.changeset()
    await source.guideline_files("head")
    await source.guideline_files("base")
    await gateway.previous_findings("octo", "app", 1, "octocat")
    await source.read_files([(f.path, "head") for f in change.files])
    await gateway.post_review(
        "octo", "app", 1, commit_id=change.head, body="ok", event=ReviewEvent.COMMENT
    )

    # get PR, 1 page of files, head tree, base tree, previous findings, 2 content batches
    # (60 files), post. No guideline files exist, so no guideline content query.
    assert gateway.calls == 8
    assert len(fake_github.api_requests) == 8


async def test_changeset_of_a_missing_pull_request_is_a_source_error(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    source = PullRequestSource(gateway, "octo", "app", 99, is_guideline=_is_skill)

    with pytest.raises(SourceError, match="404"):
        await source.changeset()


async def test_changeset_during_an_outage_stays_transient(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    fake_github.fail("get_pull", status=503, times=10)
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    with pytest.raises(GitHubTransientError):
        await source.changeset()


# ---- previous findings -------------------------------------------------------------------


async def test_previous_findings_come_from_the_bots_markers_only(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github, files=[FakeFile("a.py", patch=MODIFIED_PATCH)])
    bot = "reviewbot[bot]"
    fake_github.add_review(
        REPO,
        1,
        user=bot,
        body=f"Summary\n{finding_marker('aaaaaaaaaaaaaaaa')}\n{finding_marker('bbbbbbbbbbbbbbbb')}",
        comments=(("a.py", 2, f"inline\n\n{finding_marker('cccccccccccccccc')}"),),
    )
    # A human quoting the marker, a user whose login is the bare slug, and the bot's visible
    # text without a marker must all be ignored.
    fake_github.add_review(REPO, 1, user="mona", body=finding_marker("dddddddddddddddd"))
    fake_github.add_review(REPO, 1, user="reviewbot", body=finding_marker("eeeeeeeeeeeeeeee"))
    fake_github.add_review(REPO, 1, user=bot, body="fp=ffffffffffffffff (no marker)")
    fake_github.add_review(
        REPO,
        1,
        user="mona",
        body="see below",
        comments=(("a.py", 3, finding_marker("1111111111111111")),),
    )

    found = await gateway.previous_findings("octo", "app", 1, await gateway.bot_login())

    assert found == {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"}
    assert len(fake_github.requests_to("graphql")) == 1
    assert fake_github.requests_to("list_review_comments") == []


async def test_previous_findings_read_every_inline_comment_of_a_long_review(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    comments = tuple(("a.py", 2, finding_marker(f"{i:016x}")) for i in range(130))
    fake_github.add_review(REPO, 1, user="octocat", body="many", comments=comments)

    found = await gateway.previous_findings("octo", "app", 1, "octocat")

    assert found == {f"{i:016x}" for i in range(130)}
    assert len(fake_github.requests_to("list_review_comments")) == 2


async def test_previous_findings_page_back_through_many_reviews(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    for i in range(230):
        fake_github.add_review(REPO, 1, user="octocat", body=finding_marker(f"{i:016x}"))

    found = await gateway.previous_findings("octo", "app", 1, "octocat")

    assert len(found) == 230
    assert len(fake_github.requests_to("graphql")) == 3


# ---- posting a review --------------------------------------------------------------------


async def test_post_review_payload(fake_github: FakeGitHub, gateway: GitHubGateway) -> None:
    _pull(fake_github, files=[FakeFile("a.py", patch=MODIFIED_PATCH)])
    comments = [
        InlineComment("a.py", 3, "single", "0123456789abcdef"),
        InlineComment("a.py", 2, "same line", "fedcba9876543210", start_line=2),
        InlineComment(
            "a.py",
            4,
            f"range\n{finding_marker('aaaaaaaaaaaaaaaa')}",
            "aaaaaaaaaaaaaaaa",
            start_line=2,
        ),
    ]

    review_id = await gateway.post_review(
        "octo",
        "app",
        1,
        commit_id="head1",
        body="The review",
        event=ReviewEvent.REQUEST_CHANGES,
        comments=comments,
    )

    [sent] = fake_github.requests_to("create_review")
    assert sent.path == "/repos/octo/app/pulls/1/reviews"
    assert {k: v for k, v in sent.json.items() if k != "comments"} == {
        "commit_id": "head1",
        "body": "The review",
        "event": "REQUEST_CHANGES",
    }
    single, same, ranged = sent.json["comments"]
    assert single == {
        "path": "a.py",
        "line": 3,
        "side": "RIGHT",
        "body": f"single\n\n{finding_marker('0123456789abcdef')}",
    }
    assert "start_line" not in same
    assert (ranged["start_line"], ranged["start_side"], ranged["line"]) == (2, "RIGHT", 4)
    assert ranged["body"].count("reviewbot:finding") == 1  # marker not doubled
    assert review_id == fake_github.repo(REPO).pulls[1].reviews[-1]["id"]


async def test_review_without_comments_sends_no_comments_key(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)

    await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="APPROVE")

    assert "comments" not in fake_github.requests_to("create_review")[0].json


async def test_a_comment_outside_the_diff_raises_comments_rejected(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github, files=[FakeFile("a.py", patch=MODIFIED_PATCH)])
    outside = [InlineComment("a.py", 40, "far away", "0123456789abcdef")]

    with pytest.raises(CommentsRejected, match="Line could not be resolved") as raised:
        await gateway.post_review(
            "octo", "app", 1, commit_id="head1", body="b", event="COMMENT", comments=outside
        )
    review_id = await gateway.post_review(
        "octo", "app", 1, commit_id="head1", body="b + folded", event="COMMENT"
    )

    assert raised.value.status == 422
    assert len(fake_github.requests_to("create_review")) == 2  # a 422 is never retried
    assert fake_github.repo(REPO).pulls[1].reviews[-1]["id"] == review_id


async def test_a_422_without_comments_is_a_plain_error(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    fake_github.fail("create_review", status=422, body={"message": "Can not approve your own"})

    with pytest.raises(GitHubError, match="Can not approve") as raised:
        await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="APPROVE")

    assert not isinstance(raised.value, CommentsRejected)


async def test_an_overlong_body_is_cut_with_a_note(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    body = "🔴 finding\n" * 10_000 + finding_marker("0123456789abcdef")

    await gateway.post_review("octo", "app", 1, commit_id="head1", body=body, event="COMMENT")

    sent = fake_github.requests_to("create_review")[0].json["body"]
    assert len(sent.encode("utf-16-le")) // 2 <= MAX_BODY_CHARS
    assert sent.endswith("_(truncated: longer than GitHub accepts)_")
    assert sent.startswith("🔴 finding\n")


@pytest.mark.parametrize("cut_inside_marker", [True, False])
def test_fit_body_never_leaves_a_marker_open(cut_inside_marker: bool) -> None:
    limit = 200
    filler = "x" * (150 if cut_inside_marker else 60)
    body = filler + finding_marker("0123456789abcdef") + "y" * 300

    fitted = fit_body(body, limit)

    assert len(fitted) <= limit
    assert fitted.count("<!--") == fitted.count("-->")
    assert fit_body("short", limit) == "short"


# ---- retries and failures ----------------------------------------------------------------


async def test_server_errors_are_retried_with_backoff(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps
) -> None:
    _pull(fake_github, title="Eventually")
    fake_github.fail("get_pull", status=502, times=2)

    pr = await gateway.pull_request("octo", "app", 1)

    assert pr.title == "Eventually"
    assert sleeps.waits == [1.0, 2.0]
    assert len(fake_github.requests_to("get_pull")) == 3
    assert gateway.calls == 3


async def test_server_errors_beyond_the_budget_are_transient(
    fake_github: FakeGitHub, sleeps: Sleeps
) -> None:
    fake_github.add_token(TOKEN, "octocat")
    policy = RetryPolicy(max_retries=2, backoff_s=0.5)
    gateway = GitHubGateway.for_token(TOKEN, retry_budget=policy, sleep=sleeps)
    _pull(fake_github)
    fake_github.fail("get_pull", status=500, times=10)

    with pytest.raises(GitHubTransientError) as raised:
        await gateway.pull_request("octo", "app", 1)

    assert raised.value.status == 500
    assert sleeps.waits == [0.5, 1.0]
    assert len(fake_github.requests_to("get_pull")) == 3


async def test_a_post_that_failed_with_5xx_is_not_resent(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps
) -> None:
    _pull(fake_github)
    fake_github.fail("create_review", status=502)

    with pytest.raises(GitHubTransientError):
        await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="COMMENT")

    assert len(fake_github.requests_to("create_review")) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_rate_limit_waits_as_long_as_github_asks(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps, status: int
) -> None:
    _pull(fake_github)
    fake_github.secondary_rate_limit("create_review", retry_after=7, status=status)

    review_id = await gateway.post_review(
        "octo", "app", 1, commit_id="head1", body="b", event="COMMENT"
    )

    assert sleeps.waits == [7.0]
    assert len(fake_github.requests_to("create_review")) == 2  # refused first, so resent
    assert review_id == fake_github.repo(REPO).pulls[1].reviews[-1]["id"]


async def test_a_retry_after_beyond_the_cap_is_left_to_the_job_queue(
    fake_github: FakeGitHub, sleeps: Sleeps
) -> None:
    fake_github.add_token(TOKEN, "octocat")
    gateway = GitHubGateway.for_token(TOKEN, retry_budget=RetryPolicy(max_wait_s=5), sleep=sleeps)
    _pull(fake_github)
    fake_github.secondary_rate_limit("get_pull", retry_after=120)

    with pytest.raises(GitHubTransientError) as raised:
        await gateway.pull_request("octo", "app", 1)

    assert raised.value.retry_after == 120
    assert sleeps.waits == []


async def test_exhausted_primary_rate_limit_is_transient_at_once(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps
) -> None:
    _pull(fake_github)
    fake_github.primary_rate_limit("get_pull", reset_in=600)

    with pytest.raises(GitHubTransientError, match="rate limit") as raised:
        await gateway.pull_request("octo", "app", 1)

    assert raised.value.retry_after is not None and 590 <= raised.value.retry_after <= 600
    assert sleeps.waits == []
    assert gateway.rate_limit_remaining == 0


async def test_timeouts_are_retried_then_transient(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps
) -> None:
    _pull(fake_github)
    fake_github.raise_error("get_pull", httpx.ReadTimeout, times=1)

    assert (await gateway.pull_request("octo", "app", 1)).number == 1

    fake_github.raise_error("get_pull", httpx.ReadTimeout, times=10)
    with pytest.raises(GitHubTransientError, match="no answer from GitHub within 5 s"):
        await gateway.pull_request("octo", "app", 1)
    assert len(fake_github.requests_to("get_pull")) == 2 + 4


async def test_connect_errors_are_retried_even_for_posts(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps
) -> None:
    _pull(fake_github)
    fake_github.raise_error("create_review", httpx.ConnectError)

    await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="COMMENT")

    assert len(fake_github.requests_to("create_review")) == 2
    assert len(fake_github.repo(REPO).pulls[1].reviews) == 1


async def test_a_read_timeout_on_a_post_is_not_resent(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    fake_github.raise_error("create_review", httpx.ReadTimeout)

    with pytest.raises(GitHubTransientError):
        await gateway.post_review("octo", "app", 1, commit_id="head1", body="b", event="COMMENT")

    assert len(fake_github.requests_to("create_review")) == 1


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_client_errors_are_permanent_and_not_retried(
    fake_github: FakeGitHub, gateway: GitHubGateway, sleeps: Sleeps, status: int
) -> None:
    _pull(fake_github)
    fake_github.fail("get_pull", status=status, body={"message": "Resource not accessible"})

    with pytest.raises(GitHubError, match="Resource not accessible") as raised:
        await gateway.pull_request("octo", "app", 1)

    assert type(raised.value) is GitHubError
    assert raised.value.status == status
    assert sleeps.waits == []


async def test_rate_limit_remaining_is_remembered(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    fake_github.rate_limit_remaining = 1234

    await gateway.pull_request("octo", "app", 1)

    assert gateway.rate_limit_remaining == 1233


# ---- marker comments and check runs ------------------------------------------------------


MARKER = "<!-- reviewbot:snapshots -->"


async def test_upsert_marker_comment_creates_one_when_none_is_ours(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    fake_github.add_issue_comment(REPO, 1, user="mona", body=f"quoting {MARKER}")

    comment_id = await gateway.upsert_marker_comment("octo", "app", 1, MARKER, "Report")

    comments = fake_github.repo(REPO).issue_comments[1]
    assert len(comments) == 2
    assert comments[-1]["id"] == comment_id
    assert comments[-1]["body"] == f"Report\n\n{MARKER}"
    assert comments[-1]["user"]["login"] == "octocat"


async def test_upsert_marker_comment_edits_the_newest_and_deletes_duplicates(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    _pull(fake_github)
    older = fake_github.add_issue_comment(REPO, 1, user="octocat", body=f"v1 {MARKER}")
    human = fake_github.add_issue_comment(REPO, 1, user="mona", body=f"v? {MARKER}")
    newest = fake_github.add_issue_comment(REPO, 1, user="octocat", body=f"v2 {MARKER}")
    other = fake_github.add_issue_comment(REPO, 1, user="octocat", body="unrelated")

    comment_id = await gateway.upsert_marker_comment("octo", "app", 1, MARKER, f"v3 {MARKER}")

    assert comment_id == newest
    comments = {c["id"]: c["body"] for c in fake_github.repo(REPO).issue_comments[1]}
    assert comments == {human: f"v? {MARKER}", newest: f"v3 {MARKER}", other: "unrelated"}
    assert [r.path for r in fake_github.requests_to("delete_issue_comment")] == [
        f"/repos/octo/app/issues/comments/{older}"
    ]

    await gateway.upsert_marker_comment("octo", "app", 1, MARKER, f"v3 {MARKER}")
    assert len(fake_github.requests_to("update_issue_comment")) == 1  # unchanged: no edit


async def test_upsert_marker_comment_as_the_app_finds_its_bot_comments(
    fake_github: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github)
    mine = fake_github.add_issue_comment(REPO, 1, user="reviewbot[bot]", body=f"old {MARKER}")

    assert await gateway.upsert_marker_comment("octo", "app", 1, MARKER, "new") == mine
    assert fake_github.repo(REPO).issue_comments[1][0]["body"] == f"new\n\n{MARKER}"


async def test_create_check_run(fake_github: FakeGitHub, gateway: GitHubGateway) -> None:
    run_id = await gateway.create_check_run(
        "octo",
        "app",
        name="reviewbot/snapshots",
        head_sha="head1",
        conclusion="neutral",
        title="3 snapshots changed",
        summary="details",
    )

    [sent] = fake_github.requests_to("create_check_run")
    assert sent.json == {
        "name": "reviewbot/snapshots",
        "head_sha": "head1",
        "status": "completed",
        "conclusion": "neutral",
        "output": {"title": "3 snapshots changed", "summary": "details"},
    }
    assert fake_github.repo(REPO).check_runs[0]["id"] == run_id


# ---- artifacts ---------------------------------------------------------------------------


async def test_artifact_listings(fake_github: FakeGitHub, gateway: GitHubGateway) -> None:
    old_main = fake_github.add_artifact(REPO, name="snapshots", content=b"1", head_branch="main")
    fake_github.add_artifact(REPO, name="snapshots", content=b"2", head_branch="topic")
    fake_github.add_artifact(REPO, name="coverage", content=b"3", head_branch="main")
    new_main = fake_github.add_artifact(
        REPO, name="snapshots", content=b"4", head_branch="main", run_id=9
    )
    fake_github.add_artifact(REPO, name="snapshots", content=b"5", expired=True)

    baselines = await gateway.list_repo_artifacts("octo", "app", "snapshots", branch="main")
    every_branch = await gateway.list_repo_artifacts("octo", "app", "snapshots")
    of_run = await gateway.list_workflow_run_artifacts("octo", "app", 9)

    assert [a.id for a in baselines] == [new_main, old_main]
    assert baselines[0].head_branch == "main" and baselines[0].workflow_run_id == 9
    assert len(every_branch) == 3
    assert [a.id for a in of_run] == [new_main]
    assert fake_github.requests_to("list_artifacts")[0].params["name"] == "snapshots"


async def test_a_forks_main_branch_never_provides_the_baseline(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    ours = fake_github.add_artifact(REPO, name="snapshot-baselines", content=b"1")
    # Newer, same branch name, but the run's head came from a fork.
    fake_github.add_artifact(REPO, name="snapshot-baselines", content=b"2", from_fork=True)
    baselines = await gateway.list_repo_artifacts(
        "octo", "app", "snapshot-baselines", branch="main"
    )
    assert [a.id for a in baselines] == [ours]


async def test_download_artifact_follows_the_redirect_without_our_token(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    content = b"PK\x03\x04" + bytes(range(256)) * 40
    artifact_id = fake_github.add_artifact(REPO, name="snapshots", content=content)

    data = await gateway.download_artifact("octo", "app", artifact_id, max_bytes=len(content))

    assert data == content
    [blob] = fake_github.requests_to("blob")
    assert "authorization" not in blob.headers
    assert gateway.calls == 1  # the storage download is not an API call


@pytest.mark.parametrize("chunked", [False, True])
async def test_download_artifact_stops_at_the_size_bound(
    fake_github: FakeGitHub, gateway: GitHubGateway, chunked: bool
) -> None:
    fake_github.blob_chunked = chunked
    artifact_id = fake_github.add_artifact(REPO, name="snapshots", content=b"z" * 5_000)

    assert len(await gateway.download_artifact("octo", "app", artifact_id, 5_000)) == 5_000
    with pytest.raises(ArtifactTooLarge):
        await gateway.download_artifact("octo", "app", artifact_id, max_bytes=4_999)


async def test_an_expired_artifact_is_a_permanent_error(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    artifact_id = fake_github.add_artifact(REPO, name="s", content=b"x", expired=True)

    with pytest.raises(GitHubError) as raised:
        await gateway.download_artifact("octo", "app", artifact_id, max_bytes=10)

    assert raised.value.status == 410


async def test_artifact_storage_outage_is_transient(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    artifact_id = fake_github.add_artifact(REPO, name="s", content=b"x")
    fake_github.fail("blob", status=503)

    with pytest.raises(GitHubTransientError, match="503"):
        await gateway.download_artifact("octo", "app", artifact_id, max_bytes=10)


# ---- GitHub Enterprise Server ------------------------------------------------------------


@pytest.fixture
def ghes() -> Iterator[FakeGitHub]:
    with fake_github_server("https://ghe.example/api/v3") as fake:
        yield fake


async def test_ghes_base_url_prefixes_rest_and_moves_graphql(
    ghes: FakeGitHub, app_key: AppKey
) -> None:
    gateway = _app_gateway(ghes, app_key)
    files = [FakeFile.added(f"f{i}.py", "x\n") for i in range(150)]
    ghes.add_commit(REPO, "head1", {"f0.py": "x\n"})
    ghes.add_pull(REPO, FakePull(1, "head1", "base1", files=files))
    source = PullRequestSource(gateway, "octo", "app", 1, is_guideline=_is_skill)

    change = await source.changeset()
    texts = await source.read_files([("f0.py", "head")])

    assert len(change.files) == 150
    assert texts == {("f0.py", "head"): "x\n"}
    urls = [r.url.split("?")[0] for r in ghes.requests]
    assert "https://ghe.example/api/v3/app/installations/7/access_tokens" in urls
    assert "https://ghe.example/api/v3/repos/octo/app/pulls/1" in urls
    assert "https://ghe.example/api/graphql" in urls
    assert all(r.route != "unknown" for r in ghes.requests)
    assert len(ghes.requests_to("list_files")) == 2  # the next link kept the prefix


# ---- secrets -----------------------------------------------------------------------------


async def test_no_secret_reaches_the_logs_or_the_errors(
    fake_github: FakeGitHub, app_key: AppKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = _app_gateway(fake_github, app_key)
    _pull(fake_github)
    fake_github.fail("get_pull", status=502)  # a retry logs a warning
    errors: list[str] = []

    await gateway.pull_request("octo", "app", 1)
    fake_github.fail("get_pull", status=404, times=1)
    try:
        await gateway.pull_request("octo", "app", 1)
    except GitHubError as error:
        errors.append(str(error))

    jwt_value = fake_github.requests_to("access_token")[0].headers["authorization"].split()[1]
    secrets = [jwt_value, *fake_github.issued_tokens, *app_key.private_pem.splitlines()[1:-1]]
    assert any("retrying" in record.getMessage() for record in caplog.records)
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}"
        for record in caplog.records
    )
    seen = "\n".join([logged, *errors, repr(gateway)])
    assert errors
    for secret in secrets:
        assert secret not in seen


async def test_previous_reviews_reads_heads_deliveries_and_current_head(
    fake_github: FakeGitHub, gateway: GitHubGateway
) -> None:
    from reviewbot.github import PreviousReviews, delivery_marker

    pull = FakePull(number=7, head_sha="c" * 40, base_sha="b" * 40)
    fake_github.add_pull("o/r", pull)
    body = (
        f"<!-- reviewbot:review head={'a' * 40} -->\n"
        + delivery_marker("d-1")
        + "\n<!-- reviewbot:finding fp=0123456789abcdef -->"
    )
    fake_github.add_review("o/r", 7, user="reviewbot[bot]", body=body)
    fake_github.add_review("o/r", 7, user="mallory", body=body.replace("d-1", "d-2"))
    previous = await gateway.previous_reviews("o", "r", 7, "reviewbot[bot]")
    assert previous == PreviousReviews(
        fingerprints=frozenset({"0123456789abcdef"}),
        heads=frozenset({"a" * 40}),
        deliveries=frozenset({"d-1"}),
        current_head="c" * 40,
    )
