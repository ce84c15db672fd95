"""The last step of the pipeline: post a rendered review to a pull request.

The service worker and ``reviewbot review --pr --post`` both come through here, so a review
posted from CI looks exactly like one posted by the hosted app.
"""

from __future__ import annotations

import logging

from reviewbot.github import (
    CommentsRejected,
    GitHubError,
    GitHubGateway,
    PullRequestSource,
    delivery_marker,
)
from reviewbot.models import ReviewEvent
from reviewbot.pipeline import Outcome
from reviewbot.render import render, render_review
from reviewbot.review import fold_inline
from reviewbot.settings import Settings
from reviewbot.source import ChangeSource, SourceError

log = logging.getLogger(__name__)

FAILURE_MARKER = "<!-- reviewbot:failure -->"


async def post_review(
    gateway: GitHubGateway,
    owner: str,
    repo: str,
    number: int,
    outcome: Outcome,
    *,
    delivery_id: str | None = None,
) -> int:
    """Post one review on the reviewed head commit; never lose a finding on a 422.

    ``delivery_id`` goes into a hidden marker so that a job re-run after a crash (posted,
    but not yet marked done) can see it already answered that delivery.
    """
    review = outcome.review
    rendered = render_review(review)
    suffix = f"\n{delivery_marker(delivery_id)}\n" if delivery_id else ""
    body = rendered.body + suffix
    if rendered.comments:
        try:
            return await gateway.post_review(
                owner,
                repo,
                number,
                commit_id=review.head,
                body=body,
                event=review.event.value,
                comments=list(rendered.comments),
            )
        except CommentsRejected:
            # GitHub rejects the whole review when one comment is off the diff: post
            # again with every comment folded into the body.
            log.warning("GitHub rejected the inline comments; posting them in the body")
            body = render_review(fold_inline(review)).body + suffix
    try:
        return await gateway.post_review(
            owner,
            repo,
            number,
            commit_id=review.head,
            body=body,
            event=review.event.value,
            comments=[],
        )
    except GitHubError as error:
        if error.status != 422 or review.event is ReviewEvent.COMMENT:
            raise
        # An App may not be allowed to approve (or a token may be the PR's author): the
        # review itself matters more than its event.
        log.warning("GitHub refused the %s event; posting as a comment", review.event.value)
        return await gateway.post_review(
            owner, repo, number, commit_id=review.head, body=body, event="COMMENT", comments=[]
        )


async def post_failure_note(
    gateway: GitHubGateway, owner: str, repo: str, number: int, *, reason: str, head: str | None
) -> int:
    """Say on the PR that the review could not be done, instead of staying silent."""
    body = render("failure_note.md.j2", marker=FAILURE_MARKER, reason=reason, head=head)
    return await gateway.upsert_marker_comment(owner, repo, number, FAILURE_MARKER, body)


def token_gateway(settings: Settings) -> GitHubGateway:
    if settings.github_token is None:
        raise SourceError("GITHUB_TOKEN is not set: reading a pull request needs a token")
    return GitHubGateway.for_token(
        settings.github_token.get_secret_value(), base_url=settings.github_api_url
    )


async def pr_source(settings: Settings, owner: str, repo: str, number: int) -> PullRequestSource:
    return PullRequestSource(token_gateway(settings), owner, repo, number)


async def post_cli_review(settings: Settings, source: ChangeSource, outcome: Outcome) -> int:
    """``reviewbot review --pr ... --post``: the same posting path as the service."""
    assert isinstance(source, PullRequestSource)
    current = await source.gateway.get_pull_request_head(source.owner, source.repo, source.number)
    if current != outcome.review.head:
        raise SourceError(
            f"the pull request moved to {current[:12]} while it was reviewed; run again"
        )
    return await post_review(source.gateway, source.owner, source.repo, source.number, outcome)
