"""Run a snapshot job: fetch a workflow run's snapshots and the baselines, compare, report.

The worker calls ``run_snapshot_job`` for a ``workflow_run`` ``completed`` delivery of the
snapshot workflow (the events router makes the job, ``reviewbot.tasks`` passes it on)::

    await run_snapshot_job(
        gateway,                                  # for the payload's installation.id
        owner=repository.owner.login,
        repo=repository.name,
        run_id=workflow_run.id,
        pr_numbers=[p.number for p in workflow_run.pull_requests],
        head_sha=workflow_run.head_sha,
        settings=SnapshotSettings(...),
    )

For every open pull request whose head is still the run's head, the run's artifact named
``current_artifact`` is compared with the newest unexpired ``baseline_artifact`` from a run
on the PR's base branch; one marker comment per PR is created or edited in place, and one
check run ``Snapshots`` goes on the head commit. Its conclusion:

* ``success`` — snapshots match, are all new (no baseline artifact at all), or their changes
  are acknowledged by the PR's ``label``;
* ``failure`` — unacknowledged changes or removals, and also an artifact that could not be
  downloaded or was refused as unsafe: nothing vouches for the snapshots then (fail closed);
* ``neutral`` — the run uploaded no current artifact: the tests never got as far as taking
  screenshots, and the workflow's own failure already says so.

A PR that is closed or has moved on to another head gets nothing (a newer run reports on
it); with no such PR left the job is skipped. ``GitHubTransientError`` propagates so the
job is retried; other ``GitHubError`` from reading PRs, listing artifacts or posting
propagates too. Archives are unpacked by ``reviewbot.archive`` in a temporary folder that
is removed before anything is posted.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from reviewbot.archive import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_UNPACKED_BYTES,
    ArchiveError,
    ArchiveLimits,
    extract_zip,
)
from reviewbot.github import (
    Artifact,
    ArtifactTooLarge,
    GitHubError,
    GitHubGateway,
    GitHubTransientError,
    PullRequest,
)
from reviewbot.render import inline_code, render
from reviewbot.snapshots import (
    DEFAULT_MAX_DIFF_PIXELS,
    DEFAULT_THRESHOLD,
    MARKER,
    CompareOptions,
    SnapshotError,
    SnapshotResult,
    SnapshotStatus,
    compare_dirs,
    render_report,
    safe_base_url,
)

if TYPE_CHECKING:
    from reviewbot.settings import Settings

log = logging.getLogger(__name__)

CHECK_NAME = "Snapshots"
_MD_PUNCTUATION = "\\`*_[]~"


class Conclusion(StrEnum):
    SUCCESS = "success"
    NEUTRAL = "neutral"
    FAILURE = "failure"


# Several PRs share one check run (it belongs to the commit): the worst conclusion wins.
_RANK = {Conclusion.SUCCESS: 0, Conclusion.NEUTRAL: 1, Conclusion.FAILURE: 2}


@dataclass(frozen=True)
class SnapshotSettings:
    """Names, bounds and thresholds of the snapshot job; ValueError on unsafe values."""

    workflow_name: str = "Snapshot Tests"  # read by the events router, not here
    baseline_artifact: str = "snapshot-baselines"
    current_artifact: str = "snapshots"
    label: str = "update-snapshots"
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    # Diff images are not hosted by the service; set this only where they are published
    # under the same relative names (``<name>-diff.png``) by something else.
    diff_base_url: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    max_diff_pixels: int = DEFAULT_MAX_DIFF_PIXELS
    download_deadline_s: float = 300.0
    # Where the temporary folders go (None: the system's temporary folder).
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("workflow_name", "baseline_artifact", "current_artifact", "label"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        if self.baseline_artifact == self.current_artifact:
            raise ValueError("baseline_artifact and current_artifact must differ")
        if not self.download_deadline_s > 0:
            raise ValueError("download_deadline_s must be positive")
        self.archive_limits()  # validates the bounds
        self.compare_options()  # validates the thresholds
        safe_base_url(self.diff_base_url)

    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_archive_bytes=self.max_archive_bytes,
            max_files=self.max_files,
            max_unpacked_bytes=self.max_unpacked_bytes,
        )

    def compare_options(self) -> CompareOptions:
        return CompareOptions(
            threshold=self.threshold,
            max_diff_pixels=self.max_diff_pixels,
            max_files=self.max_files,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SnapshotSettings:
        """The job's settings from the service's ``Settings`` (``REVIEWBOT_SNAPSHOT_*``)."""
        return cls(
            workflow_name=settings.snapshot_workflow,
            baseline_artifact=settings.snapshot_baseline_artifact,
            current_artifact=settings.snapshot_current_artifact,
            label=settings.snapshot_update_label,
        )


@dataclass(frozen=True)
class PullReport:
    """What one pull request was told.

    ``status`` is a ``SnapshotStatus`` value, ``no_artifact`` (nothing to compare) or
    ``error`` (an artifact could not be used).
    """

    number: int
    status: str
    conclusion: Conclusion
    title: str
    body: str
    comment_id: int | None = None
    result: SnapshotResult | None = None


@dataclass(frozen=True)
class SnapshotOutcome:
    """The job's result: per-PR reports, the check run, or why nothing was done."""

    reports: tuple[PullReport, ...] = ()
    conclusion: Conclusion | None = None
    check_run_id: int | None = None
    skipped: str | None = None
    # PRs left out and why (closed, moved on).
    notes: tuple[str, ...] = ()

    @property
    def comment_id(self) -> int | None:
        return self.reports[0].comment_id if self.reports else None


@dataclass(frozen=True)
class _Side:
    """One side of the comparison once fetched: a folder, or why there is none."""

    folder: Path | None
    artifact: Artifact | None = None
    problem: str | None = None


async def run_snapshot_job(
    gateway: GitHubGateway,
    *,
    owner: str,
    repo: str,
    run_id: int,
    pr_numbers: Sequence[int],
    head_sha: str,
    settings: SnapshotSettings,
) -> SnapshotOutcome:
    """Compare the run's snapshots for each of its PRs, post the comments and the check run.

    ``head_sha`` is the run's head commit ("" to take the first PR's head).
    """
    numbers = list(dict.fromkeys(int(number) for number in pr_numbers))
    if not numbers:
        # GitHub leaves ``pull_requests`` empty for runs of PRs from forks.
        return SnapshotOutcome(skipped="the workflow run names no pull request")
    pulls: list[PullRequest] = []
    notes: list[str] = []
    for number in numbers:
        pr = await gateway.pull_request(owner, repo, number)
        if pr.state != "open":
            notes.append(f"#{number} is {pr.state}")
        elif head_sha and pr.head_sha != head_sha:
            notes.append(f"#{number} moved on to {pr.head_sha[:12]}; a newer run reports on it")
        else:
            pulls.append(pr)
    if not pulls:
        log.info("snapshot job for run %s skipped: %s", run_id, "; ".join(notes))
        return SnapshotOutcome(skipped="; ".join(notes), notes=tuple(notes))
    head = head_sha or pulls[0].head_sha

    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    # Everything unpacked is gone before anything is posted. Cleanup errors are ignored: on
    # cancellation an unpacking thread may still be writing, and the cancellation must win.
    with tempfile.TemporaryDirectory(
        prefix="reviewbot-snapshots-", dir=settings.work_dir, ignore_cleanup_errors=True
    ) as tmp:
        work = Path(tmp)
        current = await _current(gateway, owner, repo, run_id, work / "current", settings)
        baselines: dict[str, _Side] = {}
        reports: list[PullReport] = []
        for pr in pulls:
            if current.folder is not None and pr.base_ref not in baselines:
                folder = work / f"baseline-{len(baselines)}"
                baselines[pr.base_ref] = await _baseline(
                    gateway, owner, repo, pr.base_ref, folder, settings
                )
            baseline = baselines.get(pr.base_ref, _Side(None))
            reports.append(
                await _compare(
                    pr, current, baseline, head=head, run_id=run_id, work=work, settings=settings
                )
            )

    posted: list[PullReport] = []
    for report in reports:
        comment_id = await gateway.upsert_marker_comment(
            owner, repo, report.number, MARKER, report.body
        )
        posted.append(replace(report, comment_id=comment_id))
    worst = max(posted, key=lambda report: _RANK[report.conclusion])
    title = worst.title if len(posted) == 1 else f"#{worst.number}: {worst.title}"
    check_run_id = await gateway.create_check_run(
        owner,
        repo,
        name=CHECK_NAME,
        head_sha=head,
        conclusion=worst.conclusion.value,
        title=title,
        summary=_summary(posted),
    )
    log.info(
        "snapshot job for run %s: %s",
        run_id,
        ", ".join(f"#{report.number} {report.status}" for report in posted),
    )
    return SnapshotOutcome(
        reports=tuple(posted),
        conclusion=worst.conclusion,
        check_run_id=check_run_id,
        notes=tuple(notes),
    )


# ---- fetching ----------------------------------------------------------------------------


async def _current(
    gateway: GitHubGateway,
    owner: str,
    repo: str,
    run_id: int,
    folder: Path,
    settings: SnapshotSettings,
) -> _Side:
    artifacts = await gateway.list_workflow_run_artifacts(owner, repo, run_id)
    found = [a for a in artifacts if a.name == settings.current_artifact and not a.expired]
    if not found:
        return _Side(None)
    # A re-run attempt may upload again; the newest is the one that ran last.
    artifact = max(found, key=lambda a: (a.created_at, a.id))
    return await _fetch(gateway, owner, repo, artifact, folder, settings, "current snapshot")


async def _baseline(
    gateway: GitHubGateway,
    owner: str,
    repo: str,
    branch: str,
    folder: Path,
    settings: SnapshotSettings,
) -> _Side:
    found = await gateway.list_repo_artifacts(
        owner, repo, settings.baseline_artifact, branch=branch
    )
    if not found:
        # No baselines yet: compare with an empty folder, so every snapshot is new.
        folder.mkdir()
        return _Side(folder)
    return await _fetch(gateway, owner, repo, found[0], folder, settings, "baseline")


async def _fetch(
    gateway: GitHubGateway,
    owner: str,
    repo: str,
    artifact: Artifact,
    folder: Path,
    settings: SnapshotSettings,
    what: str,
) -> _Side:
    """Download and unpack one artifact; a refusal becomes ``problem``, never an exception."""
    name = f"The {what} artifact “{artifact.name}” (run {artifact.workflow_run_id})"
    limit = settings.max_archive_bytes
    if artifact.size_in_bytes > limit:
        # GitHub says how big it is: no need to download it to find out.
        problem = f"{name} is {artifact.size_in_bytes:,} bytes, over the limit of {limit:,}."
        return _Side(None, artifact, problem)
    try:
        data = await gateway.download_artifact(
            owner, repo, artifact.id, limit, deadline_s=settings.download_deadline_s
        )
    except GitHubTransientError:
        raise
    except ArtifactTooLarge:
        return _Side(None, artifact, f"{name} is over the limit of {limit:,} bytes.")
    except GitHubError as error:
        return _Side(None, artifact, f"{name} could not be downloaded: {error}")
    folder.mkdir()
    try:
        # Inflating up to a gigabyte is blocking work: keep the worker's event loop free.
        await asyncio.to_thread(extract_zip, data, folder, settings.archive_limits())
    except ArchiveError as error:
        log.warning("refused artifact %s: %s", artifact.id, error)
        return _Side(None, artifact, f"{name} was refused: {error}.")
    return _Side(folder, artifact)


# ---- comparing and reporting -------------------------------------------------------------


async def _compare(
    pr: PullRequest,
    current: _Side,
    baseline: _Side,
    *,
    head: str,
    run_id: int,
    work: Path,
    settings: SnapshotSettings,
) -> PullReport:
    if current.folder is None and current.problem is None:
        reason = (
            f"Workflow run {run_id} uploaded no artifact named “{settings.current_artifact}”, "
            "so there was nothing to compare. Did the snapshot tests run?"
        )
        return _note(
            pr.number, "no_artifact", Conclusion.NEUTRAL, "No snapshots to compare", reason, head
        )
    problem = current.problem or baseline.problem
    if problem is not None or current.folder is None or baseline.folder is None:
        reason = f"{problem or 'An artifact could not be used.'} Nothing was compared."
        return _note(
            pr.number, "error", Conclusion.FAILURE, "Snapshot comparison failed", reason, head
        )
    acknowledged = settings.label in pr.labels
    diff_dir = work / f"diff-{pr.number}" if settings.diff_base_url else None
    try:
        result = await asyncio.to_thread(
            compare_dirs,
            baseline.folder,
            current.folder,
            options=settings.compare_options(),
            diff_dir=diff_dir,
            acknowledged=acknowledged,
        )
    except SnapshotError as error:
        reason = f"The snapshots could not be compared: {error}."
        return _note(
            pr.number, "error", Conclusion.FAILURE, "Snapshot comparison failed", reason, head
        )
    result = replace(result, notes=(_sources(run_id, pr, baseline, settings), *result.notes))
    body = render_report(
        result,
        head_sha=head,
        diff_base_url=settings.diff_base_url,
        ack_hint=(
            f"add the {inline_code(settings.label)} label to the pull request and run the "
            "snapshot workflow again"
        ),
    )
    conclusion = Conclusion.FAILURE if result.failed else Conclusion.SUCCESS
    return PullReport(
        pr.number, result.status.value, conclusion, _title(result), body, result=result
    )


def _sources(run_id: int, pr: PullRequest, baseline: _Side, settings: SnapshotSettings) -> str:
    current = f"Compared the “{settings.current_artifact}” artifact of run {run_id}"
    if baseline.artifact is None:
        return (
            f"{current} with no baselines: no “{settings.baseline_artifact}” artifact from "
            f"the {pr.base_ref} branch was found, so every snapshot counts as new."
        )
    return (
        f"{current} with the newest “{settings.baseline_artifact}” artifact from the "
        f"{pr.base_ref} branch (run {baseline.artifact.workflow_run_id})."
    )


def _title(result: SnapshotResult) -> str:
    total = len(result.entries)
    if result.status is SnapshotStatus.MATCH:
        return f"All {total} snapshots match" if total else "No snapshots"
    if result.status is SnapshotStatus.ALL_NEW:
        return f"All {total} snapshots are new"
    counts = f"{len(result.changed)} changed, {len(result.removed)} removed"
    if result.status is SnapshotStatus.ACKNOWLEDGED:
        return f"{counts} (acknowledged)"
    return f"{counts}: not acknowledged"


def _note(
    number: int, status: str, conclusion: Conclusion, title: str, reason: str, head: str
) -> PullReport:
    body = render(
        "snapshot_note.md.j2",
        marker=MARKER,
        icon="⚠️" if conclusion is Conclusion.NEUTRAL else "❌",
        title=_plain(title),
        reason=_plain(reason),
        head_sha=head,
        head_is_hex=_is_hex(head),
    )
    return PullReport(number, status, conclusion, title, body)


def _summary(reports: Sequence[PullReport]) -> str:
    """The check run's summary: the comment(s) without their hidden marker."""
    bodies = [report.body.replace(MARKER, "", 1).strip() for report in reports]
    if len(reports) == 1:
        return bodies[0] + "\n"
    parts = [
        f"### Pull request #{r.number}\n\n{body}" for r, body in zip(reports, bodies, strict=True)
    ]
    return "\n\n---\n\n".join(parts) + "\n"


def _plain(text: str) -> str:
    """Backslash-escape markdown punctuation: reasons quote entry names from the archive."""
    text = " ".join(text.split())
    return "".join(f"\\{char}" if char in _MD_PUNCTUATION else char for char in text)


def _is_hex(value: str) -> bool:
    return 7 <= len(value) <= 64 and all(char in "0123456789abcdef" for char in value)


__all__ = [
    "CHECK_NAME",
    "Conclusion",
    "PullReport",
    "SnapshotOutcome",
    "SnapshotSettings",
    "run_snapshot_job",
]
