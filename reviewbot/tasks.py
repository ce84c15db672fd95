"""What a worker does with each kind of job: review a pull request, report snapshots.

A job only names a pull request; everything else is read fresh from GitHub when it runs,
so a retried or resumed job reviews what the PR is now, not what it was at delivery time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from githubkit.cache import MemCacheStrategy

from reviewbot import metrics
from reviewbot.checks.agent_server import touches_conversation_api
from reviewbot.checks.dependency_fresh import wants_contents
from reviewbot.github import (
    GitHubError,
    GitHubGateway,
    GitHubTransientError,
    PullRequest,
    PullRequestSource,
)
from reviewbot.jobs import Job, PermanentJobError, TransientJobError
from reviewbot.logs import log_context, redact
from reviewbot.models import ReviewConfig
from reviewbot.pipeline import Outcome, analyse
from reviewbot.publish import post_failure_note, post_review
from reviewbot.registry import RegistryClient
from reviewbot.settings import Settings
from reviewbot.source import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskResult:
    """What a job did, for logs and tests: ``posted`` review id or the reason it skipped."""

    posted: int | None = None
    skipped: str | None = None
    # The analysed review (set by a dry run, which posts nothing).
    outcome: Outcome | None = None


class Tasks:
    """Job handlers bound to one configuration; one instance per worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Installation tokens are shared by every job of this process (one per hour, not
        # one per review); the registry cache too, since a publish time never changes.
        self._token_cache = MemCacheStrategy()
        self._registry: RegistryClient | None = None

    async def aclose(self) -> None:
        if self._registry is not None:
            await self._registry.aclose()
            self._registry = None

    def registry(self) -> RegistryClient:
        if self._registry is None:
            self._registry = RegistryClient(self.settings.registry_config())
        return self._registry

    def gateway(self, job: Job) -> GitHubGateway:
        """Act as the App's installation; a plain GITHUB_TOKEN serves replays without an App."""
        if job.installation_id is None or self.settings.app_id is None:
            if self.settings.github_token is not None:
                return GitHubGateway.for_token(
                    self.settings.github_token.get_secret_value(),
                    base_url=self.settings.github_api_url,
                )
            if job.installation_id is None:
                raise PermanentJobError(
                    "the delivery names no App installation and GITHUB_TOKEN is not set; "
                    "cannot act on it"
                )
            raise PermanentJobError(
                "REVIEWBOT_APP_ID is not set (and no GITHUB_TOKEN); cannot act on the delivery"
            )
        return GitHubGateway.for_installation(
            self.settings.app_id or "",
            self.settings.load_private_key() or "",
            job.installation_id,
            base_url=self.settings.github_api_url,
            token_cache=self._token_cache,
        )

    async def handle(self, job: Job) -> None:
        """The worker's entry point (a ``JobHandler``)."""
        await self.run(job)

    async def run(self, job: Job) -> TaskResult:
        """Run one job: dispatch on kind, translate GitHub errors for the worker's retries."""
        with log_context(delivery_id=job.delivery_id, repo=job.full_name, pr=job.number):
            started = time.monotonic()
            try:
                if job.kind == "review":
                    result = await self.review(job)
                else:
                    result = await self.snapshots(job)
            except (GitHubTransientError, TransientJobError) as error:
                metrics.JOBS.labels(kind=job.kind, outcome="retry").inc()
                if isinstance(error, TransientJobError):
                    raise
                raise TransientJobError(str(error), retry_after=error.retry_after) from error
            except (GitHubError, SourceError) as error:
                metrics.JOBS.labels(kind=job.kind, outcome="failed").inc()
                raise PermanentJobError(str(error)) from error
            outcome = "skipped" if result.skipped else "posted"
            metrics.JOBS.labels(kind=job.kind, outcome=outcome).inc()
            if job.kind == "review" and not result.skipped:
                metrics.REVIEW_SECONDS.observe(time.monotonic() - started)
            if result.skipped:
                log.info("job %s skipped: %s", job.kind, result.skipped)
            else:
                log.info("job %s posted %s", job.kind, result.posted)
            return result

    async def review(self, job: Job, *, dry_run: bool = False) -> TaskResult:
        """Review the PR's current head and post it (or, dry run, return it unposted)."""
        if job.number is None:
            raise PermanentJobError("a review job needs a pull request number")
        gateway = self.gateway(job)
        async with gateway:
            pr = await gateway.pull_request(job.owner, job.repo, job.number)
            if (skipped := self._skip_before(job, pr)) is not None:
                return TaskResult(skipped=skipped)
            source = PullRequestSource(gateway, job.owner, job.repo, job.number, pr)
            changeset = await source.changeset()
            if (
                job.trigger == "auto"
                and not self.settings.review_all_prs
                and not touches_conversation_api(changeset)
                and not any(wants_contents(f.path, ReviewConfig()) for f in changeset.files)
            ):
                return TaskResult(
                    skipped="touches neither agent-server conversation code nor dependencies"
                )
            with log_context(head=pr.head_sha):
                outcome = await analyse(
                    source,
                    registry=self.registry(),
                    now=self.settings.now or datetime.now(UTC),
                )
                # One call, right before posting: what the bot already said on this PR and
                # the PR's head now (never post a review of a head that is no longer it).
                bot_login = self.settings.bot_login or await gateway.bot_login()
                previous = await gateway.previous_reviews(
                    job.owner, job.repo, job.number, bot_login
                )
                outcome = outcome.with_previous(previous.fingerprints)
                if dry_run:
                    return TaskResult(outcome=outcome)
                if job.delivery_id in previous.deliveries:
                    # Posted before a crash kept the job from being marked done.
                    return TaskResult(skipped="this delivery was already answered")
                current = previous.current_head or pr.head_sha
                if current != outcome.review.head:
                    # Never post a review of a head that is no longer the PR's head; try
                    # again on the new one (if a job for it gets there first, the retry
                    # finds it reviewed and stops).
                    raise TransientJobError("the pull request moved while it was reviewed")
                if not job.forced and current in previous.heads:
                    return TaskResult(skipped=f"head {current[:12]} was already reviewed")
                review_id = await post_review(
                    gateway, job.owner, job.repo, job.number, outcome, delivery_id=job.delivery_id
                )
        return TaskResult(posted=review_id)

    def _skip_before(self, job: Job, pr: PullRequest) -> str | None:
        if pr.state != "open":
            return f"pull request is {pr.state}"
        if job.trigger == "auto" and pr.draft:
            return "draft pull request; waiting until it is ready for review"
        # A job whose head has moved on still reviews the PR's current head: deliveries
        # arrive out of order (a late redelivery of an old push can replace the newest job
        # in the queue), so "a newer job will review it" is not something to rely on. The
        # already-reviewed check below keeps this from reviewing a head twice.
        return None

    async def snapshots(self, job: Job) -> TaskResult:
        from reviewbot.snapshot_jobs import SnapshotSettings, run_snapshot_job

        gateway = self.gateway(job)
        async with gateway:
            outcome = await run_snapshot_job(
                gateway,
                owner=job.owner,
                repo=job.repo,
                run_id=int(job.extra["run_id"]),
                pr_numbers=[int(p["number"]) for p in job.extra.get("pull_requests", [])],
                head_sha=job.head_sha or "",
                settings=SnapshotSettings.from_settings(self.settings),
            )
        return TaskResult(posted=outcome.comment_id, skipped=outcome.skipped)

    async def give_up(self, job: Job, error: BaseException) -> None:
        """After the retry budget: a short failure note on the PR, never silence."""
        if job.kind != "review" or job.number is None:
            log.error("job %s for %s gave up: %s", job.kind, job.full_name, error)
            return
        reason = f"The review failed after {job.attempt} attempt(s): {redact(str(error))}"
        try:
            gateway = self.gateway(job)
            async with gateway:
                await post_failure_note(
                    gateway, job.owner, job.repo, job.number, reason=reason, head=job.head_sha
                )
        except (GitHubError, PermanentJobError) as note_error:
            log.error("could not post the failure note either: %s", note_error)
