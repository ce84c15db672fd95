"""`reviewbot snapshots report`: compare local folders and post the report on a pull request."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from reviewbot import snapshot_cli
from reviewbot.snapshots import MARKER
from tests.fakegithub import FakeGitHub, FakePull, fake_github_server

REPO = "octo/app"
TOKEN = "ghp_report_cli_token_0123"
USER = "ci-user"
HEAD = "0123456789abcdef0123456789abcdef01234567"


def _page(seed: int = 0) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def _write(path: Path, pixels: NDArray[np.uint8]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def _folders(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """Baseline and current folders for one outcome: match, changed, removed or all_new."""
    base, current = tmp_path / "baseline", tmp_path / "current"
    base.mkdir()
    current.mkdir()
    if kind != "all_new":
        _write(base / "shots/a.png", _page(1))
        _write(base / "shots/b.png", _page(2))
    if kind == "match":
        _write(current / "shots/a.png", _page(1))
        _write(current / "shots/b.png", _page(2))
    elif kind == "changed":
        _write(current / "shots/a.png", _page(1))
        _write(current / "shots/b.png", _page(3))
    elif kind in ("removed", "all_new"):
        _write(current / "shots/a.png", _page(1))
    return base, current


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("REVIEWBOT_GITHUB_API_URL", raising=False)
    return monkeypatch


@pytest.fixture
def pull(fake_github: FakeGitHub, env: pytest.MonkeyPatch) -> FakePull:
    fake_github.add_token(TOKEN, USER)
    return fake_github.add_pull(REPO, FakePull(12, HEAD, "base0"))


def _report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str, kind: str = "changed"
) -> tuple[int, str, str]:
    base = tmp_path / "baseline"
    if not base.exists():
        _folders(tmp_path, kind)
    argv = [
        "snapshots",
        "report",
        "--baseline",
        str(base),
        "--current",
        str(tmp_path / "current"),
        "--repo",
        REPO,
        "--pr",
        "12",
        *extra,
    ]
    code = snapshot_cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ours(fake: FakeGitHub, login: str = USER) -> list[dict[str, Any]]:
    comments = fake.repo(REPO).issue_comments.get(12, [])
    return [c for c in comments if c["user"]["login"] == login and MARKER in c["body"]]


@pytest.mark.parametrize(
    ("kind", "code", "headline"),
    [
        ("match", 0, "✅ **All snapshots match the main branch baselines**"),
        ("changed", 1, "❌ **Snapshots differ from the main branch baselines**: 1 changed"),
        ("removed", 1, "❌ **Snapshots differ from the main branch baselines**: 0 changed, 1 re"),
        ("all_new", 0, "✅ **All snapshots are new**"),
    ],
)
def test_report_prints_posts_and_exits_by_status(
    fake_github: FakeGitHub,
    pull: FakePull,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    code: int,
    headline: str,
) -> None:
    got, out, err = _report(capsys, tmp_path, kind=kind)

    assert (got, err) == (code, "")
    assert headline in out
    (comment,) = _ours(fake_github)
    assert comment["body"] == out
    # The head defaults to the PR's head, read from GitHub.
    assert f"Head commit: {HEAD}" in out
    assert fake_github.requests_to("get_pull")[0].headers["authorization"].endswith(TOKEN)


def test_a_second_report_edits_the_comment_in_place(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(capsys, tmp_path)[0] == 1
    (first,) = _ours(fake_github)
    # Fixed in the next push: the same folders now match.
    _write(tmp_path / "current/shots/b.png", _page(2))

    code, out, _ = _report(capsys, tmp_path)

    assert code == 0
    (second,) = _ours(fake_github)
    assert second["id"] == first["id"]
    assert second["body"] == out and "All snapshots match" in out
    assert len(fake_github.requests_to("create_issue_comment")) == 1
    assert len(fake_github.requests_to("update_issue_comment")) == 1


def test_duplicates_are_removed_keeping_the_newest(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = fake_github.add_issue_comment(REPO, 12, user=USER, body=f"{MARKER} old")
    new = fake_github.add_issue_comment(REPO, 12, user=USER, body=f"{MARKER} new")
    other = fake_github.add_issue_comment(REPO, 12, user="someone", body=f"{MARKER} theirs")

    _report(capsys, tmp_path)

    ids = [c["id"] for c in fake_github.repo(REPO).issue_comments[12]]
    assert sorted(ids) == sorted([new, other])
    assert old not in ids
    (ours,) = _ours(fake_github)
    assert ours["id"] == new and "Snapshots differ" in ours["body"]


@pytest.mark.parametrize(
    ("labels", "flags", "code"),
    [
        ((), (), 1),
        (("update-snapshots",), (), 0),
        (("update-snapshots",), ("--no-label-acknowledges",), 1),
        (("update-snapshots",), ("--label", "visual-ok"), 1),
        (("visual-ok",), ("--label", "visual-ok"), 0),
        ((), ("--acknowledged",), 0),
        ((), ("--acknowledged", "--no-label-acknowledges"), 0),
    ],
)
def test_the_label_or_the_flag_acknowledges(
    fake_github: FakeGitHub,
    pull: FakePull,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    labels: tuple[str, ...],
    flags: tuple[str, ...],
    code: int,
) -> None:
    pull.labels.extend(labels)
    got, out, _ = _report(capsys, tmp_path, *flags)
    assert got == code
    if code == 0:
        assert "✅ **Snapshot changes acknowledged**" in out
    elif "--no-label-acknowledges" in flags:
        assert "re-run with `--acknowledged`" in out
    else:
        label = flags[-1] if "--label" in flags else "update-snapshots"
        assert f"add the `{label}` label" in out


def test_head_and_thresholds_are_flags(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _report(
        capsys, tmp_path, "--head", "feedbeef", "--max-diff-pixels", str(40 * 50)
    )
    assert code == 0
    assert "Head commit: feedbeef" in out and HEAD not in out
    assert "more than 2,000 pixels differ" in out


def test_diff_images_and_links(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    diffs = tmp_path / "diffs"
    code, out, _ = _report(
        capsys, tmp_path, "--diff-dir", str(diffs), "--diff-base-url", "https://ci.test/9"
    )
    assert code == 1
    assert "[diff](https://ci.test/9/shots/b-diff.png)" in out
    assert (diffs / "shots/b-diff.png").is_file()


def test_an_actions_token_posts_as_github_actions(
    fake_github: FakeGitHub,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The Actions token is an installation token: GET /user answers 403.
    fake_github.add_token(TOKEN, "github-actions[bot]")
    fake_github.add_pull(REPO, FakePull(12, HEAD, "base0"))
    fake_github.fail("user", status=403, times=5)
    earlier = fake_github.add_issue_comment(
        REPO, 12, user="github-actions[bot]", body=f"{MARKER} earlier"
    )

    assert _report(capsys, tmp_path)[0] == 1

    (comment,) = _ours(fake_github, "github-actions[bot]")
    assert comment["id"] == earlier


def test_bot_login_flag_skips_the_user_lookup(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(capsys, tmp_path, "--bot-login", USER)[0] == 1
    assert fake_github.requests_to("user") == []
    assert len(_ours(fake_github)) == 1


def test_the_api_url_comes_from_the_environment(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_github_server("https://ghe.test/api/v3") as fake:
        fake.add_token(TOKEN, USER)
        fake.add_pull(REPO, FakePull(12, HEAD, "base0"))
        env.setenv("REVIEWBOT_GITHUB_API_URL", "https://ghe.test/api/v3")

        assert _report(capsys, tmp_path)[0] == 1

        assert len(_ours(fake)) == 1
        assert all(r.url.startswith("https://ghe.test/api/v3/") for r in fake.requests)


# ---- failures: exit 2, one line, no traceback --------------------------------------------


def _one_line_error(err: str, needle: str) -> None:
    assert err.startswith("reviewbot snapshots report: error: ")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_token_is_a_usage_error(
    fake_github: FakeGitHub,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    value: str | None,
) -> None:
    if value is None:
        env.delenv("GITHUB_TOKEN", raising=False)
    else:
        env.setenv("GITHUB_TOKEN", value)
    code, out, err = _report(capsys, tmp_path)
    assert (code, out) == (2, "")
    _one_line_error(err, "GITHUB_TOKEN is not set")
    assert fake_github.requests == []


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--repo", "octo"), "--repo must be OWNER/REPO"),
        (("--repo", "octo/app/extra"), "--repo must be OWNER/REPO"),
        (("--repo", "../../x"), "--repo must be OWNER/REPO"),
        (("--repo", "../.."), "--repo must be OWNER/REPO"),
        (("--repo", "octo/."), "--repo must be OWNER/REPO"),
        (("--repo", "octo/a b"), "--repo must be OWNER/REPO"),
        (("--pr", "0"), "positive"),
        (("--pr", "-3"), "negative"),
        (("--pr", "x"), "integer"),
        (("--label", " "), "--label must not be empty"),
        (("--diff-base-url", "ftp://x"), "http"),
        (("--threshold", "2"), "between 0"),
    ],
)
def test_bad_flags_exit_2_before_any_request(
    fake_github: FakeGitHub,
    pull: FakePull,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    needle: str,
) -> None:
    code, out, err = _report(capsys, tmp_path, *flags)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert fake_github.requests == []


def test_missing_folders_exit_2(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "baseline").mkdir()
    code, out, err = _report(capsys, tmp_path)
    assert (code, out) == (2, "")
    _one_line_error(err, "--current directory not found")
    assert fake_github.requests == []


@pytest.mark.parametrize(
    "url", ["http://ghe.test/api/v3", "ftp://ghe.test", "https://user:pw@ghe.test"]
)
def test_an_unsafe_api_url_is_refused(
    fake_github: FakeGitHub,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    url: str,
) -> None:
    env.setenv("REVIEWBOT_GITHUB_API_URL", url)
    code, _, err = _report(capsys, tmp_path)
    assert code == 2
    _one_line_error(err, "REVIEWBOT_GITHUB_API_URL")
    assert fake_github.requests == []


def test_an_unknown_pull_request_exits_2(
    fake_github: FakeGitHub,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_github.add_token(TOKEN, USER)
    code, out, err = _report(capsys, tmp_path)
    assert (code, out) == (2, "")
    _one_line_error(err, "404")


def test_a_bad_token_exits_2(
    fake_github: FakeGitHub,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_github.add_pull(REPO, FakePull(12, HEAD, "base0"))
    code, _, err = _report(capsys, tmp_path)
    assert code == 2
    _one_line_error(err, "401")
    assert TOKEN not in err


def test_a_refused_comment_exits_2_after_printing_the_report(
    fake_github: FakeGitHub, pull: FakePull, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_github.fail("create_issue_comment", status=403)
    code, out, err = _report(capsys, tmp_path)
    assert code == 2
    assert out.startswith(MARKER)
    _one_line_error(err, "403")


def test_help_names_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert snapshot_cli.main(["snapshots", "report", "--help"]) == 0
    out = capsys.readouterr().out
    assert "GITHUB_TOKEN" in out and "--label-acknowledges" in out
