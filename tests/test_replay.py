"""``reviewbot replay``: a saved webhook through the same routing and pipeline as the service.

Run through ``reviewbot.cli.main`` with settings from the environment, against the fake GitHub
(as the App's installation named in the payload) and the fake registries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reviewbot.cli import main
from tests.appkey import AppKey, new_app_key
from tests.fakegithub import FakeGitHub, FakePull
from tests.fakeregistry import NPM, PYPI, FakeRegistry
from tests.helpers_service import (
    BOT_LOGIN,
    FINDING_MARKER,
    SEND_LINE,
    SEND_WITHOUT_RUN,
    aimed,
    open_pull,
    payload,
)

FULL_NAME = "acme-corp/replayed"
NUMBER = 21
INSTALLATION = 3
APP_ID = 2468
BASE = "0" * 39 + "b"
HEAD = "0" * 39 + "c"
NOW = "2025-06-01T12:00:00Z"
# Anything that changes GitHub's state; a dry run sends none of these.
WRITES = ("create_review", "create_issue_comment", "update_issue_comment", "delete_issue_comment")


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return new_app_key()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app_key: AppKey) -> None:
    # Only what this test sets: no REVIEWBOT_* or token from the developer's shell.
    for name in list(os.environ):
        if name.startswith("REVIEWBOT_") or name == "GITHUB_TOKEN":
            monkeypatch.delenv(name)
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key.private_pem)
    monkeypatch.setenv("REVIEWBOT_APP_ID", str(APP_ID))
    monkeypatch.setenv("REVIEWBOT_PRIVATE_KEY_PATH", str(key_file))
    monkeypatch.setenv("REVIEWBOT_NPM_REGISTRY_URL", NPM)
    monkeypatch.setenv("REVIEWBOT_PYPI_URL", PYPI)
    monkeypatch.setenv("REVIEWBOT_NOW", NOW)
    monkeypatch.setenv("REVIEWBOT_DATA_DIR", str(tmp_path / "data"))


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


def saved(tmp_path: Path, data: Any, name: str = "delivery.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def opened_payload(tmp_path: Path) -> Path:
    """GitHub's sample ``pull_request.opened`` (trimmed), pointed at the fake's PR."""
    data = aimed(payload("pull_request.opened"), FULL_NAME, NUMBER, installation=INSTALLATION)
    data["pull_request"]["head"]["sha"] = HEAD
    data["pull_request"]["base"]["sha"] = BASE
    return saved(tmp_path, data)


def replay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def pull(fake: FakeGitHub) -> FakePull:
    return fake.repo(FULL_NAME).pulls[NUMBER]


def writes(fake: FakeGitHub) -> list[str]:
    return [r.route for r in fake.requests if r.route in WRITES]


# ---- dry run ------------------------------------------------------------------------------------


def test_dry_run_prints_the_review_and_posts_nothing(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = replay(
        capsys, str(opened_payload(tmp_path)), "--event", "pull_request", "--dry-run"
    )
    assert code == 1, err  # a critical finding, as `reviewbot review` exits
    assert out.startswith(f"<!-- reviewbot:review head={HEAD} -->")
    body, _, inline = out.partition(f"#### Inline comment on `src/chat.ts:{SEND_LINE}`")
    assert "### Taste Rating" in body and "[CRITICAL ISSUES]" in body
    assert "conversation-send-missing-run" in inline and FINDING_MARKER.search(inline)
    assert "<!-- reviewbot:delivery" not in out  # nothing was (or will be) posted
    assert writes(github) == [] and pull(github).reviews == []
    # It read the PR as the payload's installation.
    [mint] = github.requests_to("access_token")
    assert mint.path == f"/app/installations/{INSTALLATION}/access_tokens"


def test_dry_run_as_json(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = replay(
        capsys,
        str(opened_payload(tmp_path)),
        "--event",
        "pull_request",
        "--dry-run",
        "--format",
        "json",
    )
    assert code == 1
    review = json.loads(out)
    assert (review["base"], review["head"]) == (BASE, HEAD)
    assert (review["rating"], review["event"]) == ("needs_improvement", "COMMENT")
    assert [(f["rule"], f["path"], f["line"]) for f in review["findings"]] == [
        ("conversation-send-missing-run", "src/chat.ts", SEND_LINE)
    ]
    assert review["touches_conversation_api"] is True
    assert writes(github) == []


def test_dry_run_of_a_skipped_job_says_why(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    pull(github).state = "closed"  # closed since the delivery was saved
    code, out, _ = replay(
        capsys, str(opened_payload(tmp_path)), "--event", "pull_request", "--dry-run"
    )
    assert (code, out) == (0, "skipped: pull request is closed\n")
    assert writes(github) == []


# ---- posting ------------------------------------------------------------------------------------


def test_without_dry_run_the_review_is_posted(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(opened_payload(tmp_path))
    code, out, err = replay(capsys, path, "--event", "pull_request", "--delivery", "saved-7")
    assert code == 0, err
    assert out == f"review job for {FULL_NAME}#{NUMBER} posted\n"
    [review] = pull(github).reviews
    assert review["user"]["login"] == BOT_LOGIN and review["commit_id"] == HEAD
    assert "<!-- reviewbot:delivery id=saved-7 -->" in review["body"]
    [comment] = pull(github).review_comments
    assert (comment["path"], comment["line"]) == ("src/chat.ts", SEND_LINE)

    # Replaying the same delivery again answers nothing twice, and says so.
    code, out, _ = replay(capsys, path, "--event", "pull_request", "--delivery", "saved-7")
    assert code == 0 and len(pull(github).reviews) == 1
    assert out.startswith(f"review job for {FULL_NAME}#{NUMBER} skipped: ")


# ---- bad input and events without work ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"action": "opened", "repository": {"full_name": "a/b"}}', "does not fit"),
    ],
    ids=["missing", "not-json", "not-an-object", "wrong-shape"],
)
def test_bad_payload_file_exits_2_with_one_line(
    tmp_path: Path,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "payload.json"
    if content is not None:
        path.write_text(content)
    code, out, err = replay(capsys, str(path), "--event", "pull_request", "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith("reviewbot: error: ") and message in err
    assert err.count("\n") == 1
    assert github.requests == []


@pytest.mark.parametrize(
    ("event", "action", "reason"),
    [
        ("push", None, "event push is not handled"),
        ("pull_request", "labeled", "event pull_request.labeled is not handled"),
        ("pull_request", "closed", "event pull_request.closed is not handled"),
    ],
)
def test_event_without_a_job_prints_why_and_exits_0(
    tmp_path: Path,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    event: str,
    action: str | None,
    reason: str,
) -> None:
    data = json.loads(opened_payload(tmp_path).read_text())
    data["action"] = action
    if action is None:
        del data["action"]  # as in a push
    code, out, _ = replay(capsys, str(saved(tmp_path, data)), "--event", event)
    assert (code, out) == (0, f"no job: {reason}\n")
    assert github.requests == []


def test_draft_delivery_is_no_job(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(opened_payload(tmp_path).read_text())
    data["pull_request"]["draft"] = True
    code, out, _ = replay(capsys, str(saved(tmp_path, data)), "--event", "pull_request")
    assert (code, out) == (0, "no job: draft\n")
    assert github.requests == []
