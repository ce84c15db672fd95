"""The one place the review steps are put in order.

source → guidelines → file contents → registry look-ups → checks → review. The webhook
worker, ``reviewbot review`` and ``reviewbot replay`` all call ``analyse`` and differ only
in where the change comes from and what happens to the review afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from reviewbot.checks import all_checks
from reviewbot.checks.agent_server import language_for, may_matter, touches_conversation_api
from reviewbot.checks.base import MAX_PARSE_BYTES, CheckContext
from reviewbot.checks.dependency_fresh import packages_to_look_up, wants_contents
from reviewbot.guidelines import BUILTIN_SKILLS_DIR, builtin_skill_texts, load_guidelines
from reviewbot.models import (
    ChangedFile,
    ChangeSet,
    FileStatus,
    Finding,
    Review,
    ReviewConfig,
    Side,
)
from reviewbot.registry import RegistryClient
from reviewbot.review import Analysis, compose
from reviewbot.source import ChangeSource

log = logging.getLogger(__name__)

BUILTIN_SKILLS = BUILTIN_SKILLS_DIR


@dataclass(frozen=True)
class Outcome:
    review: Review
    changeset: ChangeSet
    config: ReviewConfig
    analysis: Analysis

    def with_previous(self, fingerprints: frozenset[str]) -> Outcome:
        """The same review, composed again knowing what earlier reviews already said.

        Lets the service read its earlier reviews (and the PR's head) in one call right
        before posting, instead of one call before the analysis and another after it.
        """
        analysis = replace(self.analysis, previous_fingerprints=fingerprints)
        return replace(self, review=compose(analysis), analysis=analysis)


def _wanted(changeset: ChangeSet, config: ReviewConfig) -> list[tuple[str, Side]]:
    wanted: list[tuple[str, Side]] = []
    for changed in changeset.files:
        if changed.status is FileStatus.DELETED or changed.is_binary:
            continue
        if wants_contents(changed.path, config):
            wanted.append((changed.path, "head"))
            if changed.status is not FileStatus.ADDED:
                wanted.append((changed.base_path, "base"))
        elif language_for(changed.path) is not None and _may_matter(changed):
            wanted.append((changed.path, "head"))
    return wanted


def _may_matter(changed: ChangedFile) -> bool:
    """Whole texts only for code whose hunks could concern the conversation rules (the same
    pre-filter their workspace uses): reading every file of a 2,000-file PR from GitHub would
    cost dozens of API calls for nothing."""
    return may_matter("\n".join([*changed.visible.values(), *changed.removed.values()]))


async def _load_contents(
    source: ChangeSource, changeset: ChangeSet, config: ReviewConfig
) -> list[str]:
    """Fill head_text/base_text where the checks need them; return what was too large."""
    texts = await source.read_files(_wanted(changeset, config))
    skipped: list[str] = []
    for changed in changeset.files:
        head = texts.get((changed.path, "head"))
        if head is not None and len(head) > MAX_PARSE_BYTES:
            skipped.append(f"{changed.path}: too large to parse ({len(head)} bytes)")
            head = None
        changed.head_text = head
        changed.base_text = texts.get((changed.base_path, "base"))
    return skipped


async def analyse(
    source: ChangeSource,
    *,
    registry: RegistryClient,
    now: datetime | None = None,
    previous_fingerprints: frozenset[str] = frozenset(),
    builtin_skills: Path = BUILTIN_SKILLS,
) -> Outcome:
    """Run every step up to the review; nothing is posted here."""
    now = now or datetime.now(UTC)
    changeset = await source.changeset()
    checks = all_checks()
    guideline_set = load_guidelines(
        await source.guideline_files("head"),
        await source.guideline_files("base"),
        builtin_skill_texts(builtin_skills),
        known_rules={rule for check in checks for rule in check.rules},
        rule_defaults={
            rule: severity for check in checks for rule, severity in check.severities.items()
        },
    )
    config = guideline_set.config
    incomplete = await _load_contents(source, changeset, config)

    packages = packages_to_look_up(changeset, config)
    publish_times = await registry.publish_times(packages) if packages else {}
    context = CheckContext(changeset=changeset, config=config, now=now, publish_times=publish_times)

    findings: list[Finding] = []
    for check in checks:
        if not any(config.enabled(rule) for rule in check.rules):
            continue
        try:
            result = check.run(context)
        except Exception:  # one broken rule must not sink the whole review
            log.exception("check %s failed", check.rule)
            incomplete.append(f"The {check.rule} check failed on this change and was skipped.")
            continue
        findings.extend(result.findings)
        incomplete.extend(result.incomplete)

    analysis = Analysis(
        changeset=changeset,
        findings=findings,
        guidelines=guideline_set.guidelines,
        config=config,
        incomplete=incomplete,
        notes=[*guideline_set.notes, *changeset.info],
        touches_conversation_api=touches_conversation_api(changeset),
        previous_fingerprints=previous_fingerprints,
        now=now,
    )
    return Outcome(review=compose(analysis), changeset=changeset, config=config, analysis=analysis)
