"""The snapshot job against the shared fake GitHub: artifacts in, one comment and a check out."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from reviewbot.github import GitHubGateway, GitHubTransientError, RetryPolicy
from reviewbot.snapshot_jobs import (
    CHECK_NAME,
    Conclusion,
    SnapshotOutcome,
    SnapshotSettings,
    run_snapshot_job,
)
from reviewbot.snapshots import MARKER
from tests.fakegithub import FakeGitHub, FakePull

REPO = "octo/app"
TOKEN = "ghs_snapshot_job_token_0123"
BOT = "reviewbot[bot]"
HEAD = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
RUN = 4242
BASE_RUN = 77


# ---- pictures and archives ---------------------------------------------------------------


def _page(width: int = 80, height: int = 60, seed: int = 0) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 0] = (np.arange(width) * 255 // (width - 1))[None, :]
    pixels[:, :, 1] = (np.arange(height) * 255 // (height - 1))[:, None]
    pixels[:, :, 2] = rng.integers(0, 256, dtype=np.uint8)
    return pixels


def _png(pixels: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _one_pixel_off(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    edited = pixels.copy()
    edited[5, 5] ^= 0xFF
    return edited


def _block_off(pixels: NDArray[np.uint8], size: int = 20) -> NDArray[np.uint8]:
    edited = pixels.copy()
    edited[:size, :size] ^= 0xFF  # size² pixels, far over the default 100
    return edited


def _zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PAGES = {name: _png(_page(seed=index)) for index, name in enumerate("abcdef")}


def _matching() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Baseline and current that match: identical, and one pixel off (tolerated)."""
    baseline = {f"home.spec.ts-snapshots/{n}.png": PAGES[n] for n in "abc"}
    current = dict(baseline)
    current["home.spec.ts-snapshots/c.png"] = _png(_one_pixel_off(_page(seed=2)))
    return baseline, current


def _changed() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Every kind of difference at once."""
    baseline = {
        "same.png": PAGES["a"],
        "over.png": PAGES["b"],
        "resized.png": PAGES["c"],
        "corrupt.png": PAGES["d"],
        "removed.png": PAGES["e"],
    }
    current = {
        "same.png": PAGES["a"],
        "over.png": _png(_block_off(_page(seed=1))),
        "resized.png": _png(_page(100, 60, seed=2)),
        "corrupt.png": PAGES["d"][:60],
        "new.png": PAGES["f"],
    }
    return baseline, current


# ---- the fake's state --------------------------------------------------------------------


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def gateway(fake_github: FakeGitHub) -> GitHubGateway:
    fake_github.add_token(TOKEN, BOT)
    return GitHubGateway.for_token(
        TOKEN,
        timeout_s=5,
        login=BOT,
        sleep=_no_sleep,
        retry_budget=RetryPolicy(max_retries=1, backoff_s=0.0),
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _pull(
    fake: FakeGitHub, number: int = 7, *, labels: tuple[str, ...] = (), **kwargs: Any
) -> FakePull:
    kwargs.setdefault("head_sha", HEAD)
    pull = FakePull(number, base_sha="base0", labels=list(labels), **kwargs)
    return fake.add_pull(REPO, pull)


def _current(fake: FakeGitHub, files: Mapping[str, bytes] | bytes, **kwargs: Any) -> int:
    content = files if isinstance(files, bytes) else _zip(files)
    return fake.add_artifact(
        REPO, name="snapshots", content=content, run_id=RUN, head_branch="feature", **kwargs
    )


def _baseline(
    fake: FakeGitHub, files: Mapping[str, bytes] | bytes, *, branch: str = "main", **kwargs: Any
) -> int:
    content = files if isinstance(files, bytes) else _zip(files)
    return fake.add_artifact(
        REPO,
        name="snapshot-baselines",
        content=content,
        run_id=kwargs.pop("run_id", BASE_RUN),
        head_branch=branch,
        **kwargs,
    )


async def _run(
    gateway: GitHubGateway,
    work: Path,
    *,
    prs: tuple[int, ...] = (7,),
    head: str = HEAD,
    **settings: Any,
) -> SnapshotOutcome:
    outcome = await run_snapshot_job(
        gateway,
        owner="octo",
        repo="app",
        run_id=RUN,
        pr_numbers=list(prs),
        head_sha=head,
        settings=SnapshotSettings(work_dir=work, **settings),
    )
    # Every unpacked byte is gone afterwards.
    assert list(work.iterdir()) == []
    return outcome


def _comments(fake: FakeGitHub, number: int = 7) -> list[dict[str, Any]]:
    return fake.repo(REPO).issue_comments.get(number, [])


def _only_report(fake: FakeGitHub, number: int = 7) -> dict[str, Any]:
    ours = [c for c in _comments(fake, number) if MARKER in c["body"]]
    assert len(ours) == 1, ours
    assert ours[0]["user"]["login"] == BOT
    return ours[0]


def _check(fake: FakeGitHub) -> dict[str, Any]:
    (run,) = fake.repo(REPO).check_runs
    assert run["name"] == CHECK_NAME
    assert run["head_sha"] == HEAD
    assert run["status"] == "completed"
    return run


# ---- outcomes ----------------------------------------------------------------------------


async def test_matching_snapshots_pass(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    baseline, current = _matching()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    outcome = await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert body.startswith(MARKER)
    assert "✅ **All snapshots match the main branch baselines**" in body
    assert "| 0 | 0 | 0 | 3 | 3 |" in body
    assert f"Head commit: {HEAD}" in body
    assert f"artifact of run {RUN}" in body and f"(run {BASE_RUN})" in body
    check = _check(fake_github)
    assert check["conclusion"] == "success"
    assert check["output"]["title"] == "All 3 snapshots match"
    assert MARKER not in check["output"]["summary"]
    assert "All snapshots match" in check["output"]["summary"]
    assert outcome.conclusion is Conclusion.SUCCESS
    assert outcome.check_run_id == check["id"]
    assert outcome.comment_id == _only_report(fake_github)["id"]
    assert outcome.reports[0].status == "match"


async def test_changes_fail_with_every_kind_listed(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    baseline, current = _changed()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    outcome = await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "❌ **Snapshots differ from the main branch baselines**: 3 changed, 1 removed." in body
    assert "`update-snapshots` label" in body
    assert "| 3 | 1 | 1 | 1 | 6 |" in body
    assert "over.png — 400 pixels differ" in body
    assert "resized.png — size changed 80×60 → 100×60" in body
    assert "corrupt.png — current: not a readable PNG" in body
    assert "- new.png" in body and "- removed.png" in body
    check = _check(fake_github)
    assert check["conclusion"] == "failure"
    assert check["output"]["title"] == "3 changed, 1 removed: not acknowledged"
    assert "over.png" in check["output"]["summary"]
    assert outcome.conclusion is Conclusion.FAILURE
    result = outcome.reports[0].result
    assert result is not None
    assert {e.path for e in result.changed} == {"over.png", "resized.png", "corrupt.png"}


async def test_the_label_acknowledges_changes(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github, labels=("bug", "update-snapshots"))
    baseline, current = _changed()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    outcome = await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "✅ **Snapshot changes acknowledged**: 3 changed, 1 removed." in body
    assert _check(fake_github)["conclusion"] == "success"
    assert outcome.reports[0].status == "acknowledged"


async def test_the_label_is_a_setting(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github, labels=("update-snapshots",))
    baseline, current = _changed()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    await _run(gateway, work, label="visual-ok")

    assert "`visual-ok` label" in _only_report(fake_github)["body"]
    assert _check(fake_github)["conclusion"] == "failure"


async def test_removed_snapshots_fail(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"kept.png": PAGES["a"], "gone.png": PAGES["b"]})
    _current(fake_github, {"kept.png": PAGES["a"]})

    await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "0 changed, 1 removed" in body and "- gone.png" in body
    assert _check(fake_github)["conclusion"] == "failure"


@pytest.mark.parametrize("other", ["none", "other_branch", "expired"])
async def test_without_a_baseline_everything_is_new(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path, other: str
) -> None:
    _pull(fake_github)
    if other == "other_branch":
        # Baselines of another branch are not this PR's baselines.
        _baseline(fake_github, {"a.png": PAGES["b"]}, branch="topic")
    elif other == "expired":
        _baseline(fake_github, {"a.png": PAGES["b"]}, expired=True)
    _current(fake_github, {"a.png": PAGES["a"], "b.png": PAGES["b"]})

    outcome = await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "✅ **All snapshots are new**" in body
    assert "no “snapshot-baselines” artifact from the main branch" in body
    check = _check(fake_github)
    assert check["conclusion"] == "success"
    assert check["output"]["title"] == "All 2 snapshots are new"
    assert outcome.reports[0].status == "all_new"
    assert fake_github.requests_to("download_artifact")[0].path.endswith(
        f"/{fake_github.repo(REPO).artifacts[-1]['id']}/zip"
    )
    assert len(fake_github.requests_to("download_artifact")) == 1


async def test_the_newest_baseline_of_the_base_branch_is_used(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github, base_ref="release/2.x")
    _baseline(fake_github, {"a.png": PAGES["b"]}, branch="release/2.x", run_id=1)
    _baseline(fake_github, {"a.png": PAGES["c"]}, branch="main", run_id=2)
    newest = _baseline(fake_github, {"a.png": PAGES["a"]}, branch="release/2.x", run_id=3)
    _current(fake_github, {"a.png": PAGES["a"]})

    await _run(gateway, work)

    assert "All snapshots match" in _only_report(fake_github)["body"]
    downloads = [r.path for r in fake_github.requests_to("download_artifact")]
    assert f"/repos/octo/app/actions/artifacts/{newest}/zip" in downloads
    assert fake_github.requests_to("list_artifacts")[0].params["name"] == "snapshot-baselines"


async def test_artifact_names_are_settings(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    fake_github.add_artifact(REPO, name="base-shots", content=_zip({"a.png": PAGES["a"]}))
    fake_github.add_artifact(
        REPO, name="shots", content=_zip({"a.png": PAGES["b"]}), run_id=RUN, head_branch="x"
    )
    _current(fake_github, {"a.png": PAGES["a"]})  # the default name: ignored

    await _run(gateway, work, baseline_artifact="base-shots", current_artifact="shots")

    assert "1 changed, 0 removed" in _only_report(fake_github)["body"]


@pytest.mark.parametrize("why", ["missing", "expired", "other_name"])
async def test_no_current_artifact_is_neutral(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path, why: str
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    if why == "expired":
        _current(fake_github, {"a.png": PAGES["a"]}, expired=True)
    elif why == "other_name":
        fake_github.add_artifact(REPO, name="logs", content=_zip({"x": b"1"}), run_id=RUN)

    outcome = await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "⚠️ **No snapshots to compare**" in body
    assert f"Workflow run {RUN} uploaded no artifact named “snapshots”" in body
    check = _check(fake_github)
    assert check["conclusion"] == "neutral"
    assert check["output"]["title"] == "No snapshots to compare"
    assert outcome.conclusion is Conclusion.NEUTRAL
    # Nothing to compare, so the baseline is not even downloaded.
    assert fake_github.requests_to("download_artifact") == []


async def test_diff_links_use_the_diff_base_url(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"shots/over.png": PAGES["b"]})
    _current(fake_github, {"shots/over.png": _png(_block_off(_page(seed=1)))})

    await _run(gateway, work, diff_base_url="https://diffs.test/run/9")

    body = _only_report(fake_github)["body"]
    assert "[diff](https://diffs.test/run/9/shots/over-diff.png)" in body


async def test_thresholds_are_settings(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["b"]})
    _current(fake_github, {"a.png": _png(_block_off(_page(seed=1)))})

    await _run(gateway, work, max_diff_pixels=400)

    assert _check(fake_github)["conclusion"] == "success"


# ---- one comment, edited in place --------------------------------------------------------


async def test_a_second_run_edits_the_same_comment(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    pull = _pull(fake_github)
    baseline, current = _changed()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    first = await _run(gateway, work)
    first_comment = _only_report(fake_github)
    assert "❌" in first_comment["body"]

    pull.labels.append("update-snapshots")
    second = await _run(gateway, work)

    comment = _only_report(fake_github)
    assert comment["id"] == first_comment["id"] == first.comment_id == second.comment_id
    assert "✅ **Snapshot changes acknowledged**" in comment["body"]
    assert len(fake_github.requests_to("create_issue_comment")) == 1
    assert len(fake_github.requests_to("update_issue_comment")) == 1
    conclusions = [run["conclusion"] for run in fake_github.repo(REPO).check_runs]
    assert conclusions == ["failure", "success"]


async def test_duplicate_reports_are_removed_and_others_left_alone(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    older = fake_github.add_issue_comment(REPO, 7, user=BOT, body=f"{MARKER}\nold report")
    newer = fake_github.add_issue_comment(REPO, 7, user=BOT, body=f"{MARKER}\nnewer report")
    human = fake_github.add_issue_comment(REPO, 7, user="mallory", body=f"{MARKER}\nfake")
    chat = fake_github.add_issue_comment(REPO, 7, user=BOT, body="an unrelated bot comment")
    baseline, current = _matching()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    outcome = await _run(gateway, work)

    remaining = {c["id"]: c for c in _comments(fake_github)}
    assert set(remaining) == {newer, human, chat}
    assert older not in remaining
    assert outcome.comment_id == newer
    assert "All snapshots match" in remaining[newer]["body"]
    assert remaining[human]["body"] == f"{MARKER}\nfake"
    assert fake_github.requests_to("create_issue_comment") == []


# ---- hostile and broken archives ---------------------------------------------------------


HOSTILE = {
    "zip_slip": (_zip({"ok.png": PAGES["a"], "../x.png": PAGES["b"]}), "leads outside"),
    "deep_slip": (_zip({"a/b/../../../x.png": PAGES["b"]}), "leads outside"),
    "absolute": (_zip({"/tmp/x.png": PAGES["b"]}), "absolute path"),
    "too_many_files": (_zip({f"{i}.png": b"x" for i in range(6)}), "more than 5 files"),
    "not_a_zip": (b"this is not a zip archive", "not a readable zip"),
    "bomb": (_zip({"a.png": bytes(3_000_000)}), "unpacks to more than"),
}


@pytest.mark.parametrize("side", ["current", "baseline"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_archives_fail_with_a_clear_note(
    fake_github: FakeGitHub,
    gateway: GitHubGateway,
    work: Path,
    tmp_path: Path,
    side: str,
    case: str,
) -> None:
    content, reason = HOSTILE[case]
    _pull(fake_github)
    good = _zip({"ok.png": PAGES["a"]})
    _baseline(fake_github, content if side == "baseline" else good)
    _current(fake_github, content if side == "current" else good)

    outcome = await _run(gateway, work, max_files=5, max_unpacked_bytes=1_000_000)

    body = _only_report(fake_github)["body"]
    assert "❌ **Snapshot comparison failed**" in body
    what = "current snapshot" if side == "current" else "baseline"
    assert f"The {what} artifact" in body
    assert "was refused" in body and reason in body
    assert "Nothing was compared." in body
    check = _check(fake_github)
    assert check["conclusion"] == "failure"
    assert check["output"]["title"] == "Snapshot comparison failed"
    assert reason in check["output"]["summary"]
    assert outcome.reports[0].status == "error"
    assert not any(path.name == "x.png" for path in tmp_path.rglob("*"))


async def test_an_artifact_listed_as_too_large_is_not_downloaded(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"a.png": PAGES["a"], "b.png": PAGES["b"]})
    limit = len(_zip({"a.png": PAGES["a"]}))

    await _run(gateway, work, max_archive_bytes=limit)

    body = _only_report(fake_github)["body"]
    assert "over the limit of" in body
    assert _check(fake_github)["conclusion"] == "failure"
    assert fake_github.requests_to("download_artifact") == []


async def test_an_artifact_bigger_than_listed_is_cut_off(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"a.png": PAGES["a"], "b.png": PAGES["b"]})
    fake_github.repo(REPO).artifacts[-1]["size_in_bytes"] = 10  # the listing lies
    fake_github.blob_chunked = True  # and no Content-Length gives it away

    await _run(gateway, work, max_archive_bytes=len(_zip({"a.png": PAGES["a"]})))

    assert "is over the limit of" in _only_report(fake_github)["body"]
    assert _check(fake_github)["conclusion"] == "failure"


async def test_hostile_names_cannot_inject_markdown(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"../<img src=x onerror=alert(1)>[click](https://evil.test).png": b"x"})

    await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "<img" not in body and "&lt;img" in body
    # Escaped brackets: the text shows, but no link hides behind "click".
    assert "[click](" not in body and "\\[click\\](" in body


async def test_a_failed_download_is_a_note(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"a.png": PAGES["a"]})
    fake_github.fail("download_artifact", status=404, times=1)

    await _run(gateway, work)

    body = _only_report(fake_github)["body"]
    assert "could not be downloaded" in body and "404" in body
    assert _check(fake_github)["conclusion"] == "failure"


async def test_a_transient_failure_is_raised_for_a_retry_and_posts_nothing(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"a.png": PAGES["a"]})
    fake_github.fail("blob", status=503, times=10)

    with pytest.raises(GitHubTransientError):
        await run_snapshot_job(
            gateway,
            owner="octo",
            repo="app",
            run_id=RUN,
            pr_numbers=[7],
            head_sha=HEAD,
            settings=SnapshotSettings(work_dir=work),
        )

    assert list(work.iterdir()) == []
    assert _comments(fake_github) == []
    assert fake_github.repo(REPO).check_runs == []


# ---- which pull requests -----------------------------------------------------------------


async def test_no_pull_request_skips(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _current(fake_github, {"a.png": PAGES["a"]})

    outcome = await _run(gateway, work, prs=())

    assert outcome.skipped == "the workflow run names no pull request"
    assert outcome.comment_id is None and outcome.conclusion is None
    assert fake_github.api_requests == []


@pytest.mark.parametrize(
    ("pull_kwargs", "reason"),
    [
        ({"state": "closed"}, "#7 is closed"),
        ({"head_sha": "f" * 40}, "#7 moved on to ffffffffffff"),
    ],
)
async def test_closed_or_moved_pull_requests_are_skipped(
    fake_github: FakeGitHub,
    gateway: GitHubGateway,
    work: Path,
    pull_kwargs: dict[str, Any],
    reason: str,
) -> None:
    _pull(fake_github, **pull_kwargs)
    _baseline(fake_github, {"a.png": PAGES["a"]})
    _current(fake_github, {"a.png": PAGES["b"]})

    outcome = await _run(gateway, work)

    assert outcome.skipped is not None and reason in outcome.skipped
    assert _comments(fake_github) == []
    assert fake_github.repo(REPO).check_runs == []
    assert fake_github.requests_to("download_artifact") == []


async def test_several_pull_requests_share_one_check_with_the_worst_conclusion(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github, 7, base_ref="main")
    _pull(fake_github, 8, base_ref="release")
    _pull(fake_github, 9, base_ref="main", state="closed")
    _baseline(fake_github, {"a.png": PAGES["a"]}, branch="main")
    _baseline(fake_github, {"a.png": PAGES["b"]}, branch="release")
    _current(fake_github, {"a.png": PAGES["a"]})

    outcome = await _run(gateway, work, prs=(7, 8, 9, 7))

    assert "All snapshots match" in _only_report(fake_github, 7)["body"]
    assert "1 changed, 0 removed" in _only_report(fake_github, 8)["body"]
    assert _comments(fake_github, 9) == []
    check = _check(fake_github)
    assert check["conclusion"] == "failure"
    assert check["output"]["title"] == "#8: 1 changed, 0 removed: not acknowledged"
    summary = check["output"]["summary"]
    assert "### Pull request #7" in summary and "### Pull request #8" in summary
    assert [r.number for r in outcome.reports] == [7, 8]
    assert outcome.notes == ("#9 is closed",)
    # One current download, and one baseline per base branch.
    assert len(fake_github.requests_to("download_artifact")) == 3


async def test_the_work_dir_is_made_and_left_empty(
    fake_github: FakeGitHub, gateway: GitHubGateway, tmp_path: Path
) -> None:
    _pull(fake_github)
    baseline, current = _changed()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    await _run(gateway, tmp_path / "not" / "yet")

    assert (tmp_path / "not" / "yet").is_dir()


async def test_an_empty_head_takes_the_pull_requests_head(
    fake_github: FakeGitHub, gateway: GitHubGateway, work: Path
) -> None:
    _pull(fake_github)
    baseline, current = _matching()
    _baseline(fake_github, baseline)
    _current(fake_github, current)

    await _run(gateway, work, head="")

    assert _check(fake_github)["head_sha"] == HEAD


# ---- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"label": " "},
        {"current_artifact": ""},
        {"baseline_artifact": "snapshots"},
        {"max_files": 0},
        {"max_archive_bytes": -1},
        {"max_unpacked_bytes": True},
        {"threshold": 1.5},
        {"max_diff_pixels": -1},
        {"diff_base_url": "javascript:alert(1)"},
        {"download_deadline_s": 0},
    ],
)
def test_unsafe_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SnapshotSettings(**bad)


def test_defaults_and_service_settings(tmp_path: Path) -> None:
    from reviewbot.settings import Settings

    defaults = SnapshotSettings()
    assert (defaults.workflow_name, defaults.baseline_artifact, defaults.current_artifact) == (
        "Snapshot Tests",
        "snapshot-baselines",
        "snapshots",
    )
    assert defaults.label == "update-snapshots"
    assert defaults.max_archive_bytes == 200 * 1024 * 1024
    assert defaults.max_files == 10_000
    assert defaults.max_unpacked_bytes == 1024 * 1024 * 1024

    settings = Settings(
        data_dir=tmp_path,
        snapshot_workflow="Visual",
        snapshot_baseline_artifact="base",
        snapshot_current_artifact="cur",
        snapshot_update_label="ok-visual",
    )
    derived = SnapshotSettings.from_settings(settings)
    assert (derived.workflow_name, derived.baseline_artifact) == ("Visual", "base")
    assert (derived.current_artifact, derived.label) == ("cur", "ok-visual")
