"""Check: dependency versions the change introduces that the registry published too recently.

Two pure steps around one I/O step the pipeline runs in between:
``packages_to_look_up(changeset, config)`` lists the registry versions to date, the pipeline
asks the registry and fills ``ctx.publish_times``, and ``CHECK.run(ctx)`` judges them. The
publish time comes from the registry only: a lockfile's own timestamps are written by the
author of the change.
"""

from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reviewbot.checks.base import Check, CheckContext
from reviewbot.checks.deps import Dep, format_for, introduced, pin_applies
from reviewbot.checks.deps.base import NPM, PYPI
from reviewbot.models import (
    ChangeSet,
    CheckResult,
    Finding,
    Location,
    Package,
    PublishTime,
    ReviewConfig,
    Severity,
)
from reviewbot.render import inline_code

RULE = "dependency-too-fresh"
UNVERIFIABLE = "dependency-unverifiable"
REGISTRY_NAMES = {PYPI: "PyPI", NPM: "npm"}
# Names listed in an incomplete-review note before "and N more".
_NOTE_NAMES = 5


def wants_contents(path: str, config: ReviewConfig) -> bool:
    """Whether the pipeline should load head and base text of ``path`` for this check."""
    return format_for(path) is not None or any(pin_applies(m, path) for m in config.pins)


@dataclass
class Introduced:
    """One dependency version the change introduces, with every place it appears."""

    dep: Dep
    locations: list[Location] = field(default_factory=list)
    code: str = ""


@dataclass(frozen=True)
class Analysis:
    registry: tuple[Introduced, ...]
    undatable: tuple[Introduced, ...]
    notes: tuple[str, ...]


def is_exempt(dep: Dep, globs: tuple[str, ...]) -> bool:
    """``exempt`` globs match the bare name or ``ecosystem:name``, case-insensitively."""
    name = dep.name.lower()
    qualified = f"{dep.ecosystem}:{name}"
    return any(
        fnmatch.fnmatchcase(name, glob.lower()) or fnmatch.fnmatchcase(qualified, glob.lower())
        for glob in globs
    )


def _analyse(changeset: ChangeSet, config: ReviewConfig) -> Analysis:
    found: dict[tuple[str, str, str], Introduced] = {}
    notes: list[str] = []
    for changed in CheckContext(changeset, config).files():
        result = introduced(changed, config.pins)
        notes.extend(result.notes)
        for dep in result.deps:
            if is_exempt(dep, config.exempt):
                continue
            entry = found.setdefault(dep.key, Introduced(dep))
            location = Location(changed.path, dep.line)
            if location not in entry.locations:
                entry.locations.append(location)
            if not entry.code and dep.line is not None:
                entry.code = changed.added.get(dep.line, "").strip()
    # A version line inside the diff first: GitHub can show that one inline.
    for entry in found.values():
        entry.locations.sort(key=lambda loc: loc.line is None)
    registry = tuple(entry for entry in found.values() if entry.dep.source is None)
    undatable = tuple(entry for entry in found.values() if entry.dep.source is not None)
    return Analysis(registry, undatable, tuple(notes))


# packages_to_look_up and the check run over the same change set one after the other; a
# 50,000-line lockfile should be parsed once per review, not twice.
_memo: tuple[weakref.ref[ChangeSet], ReviewConfig, tuple[object, ...], Analysis] | None = None


def _signature(changeset: ChangeSet) -> tuple[object, ...]:
    return tuple(
        (
            changed.path,
            changed.status,
            id(changed.head_text),
            len(changed.head_text or ""),
            id(changed.base_text),
            len(changed.base_text or ""),
            changed.head_is_partial,
            len(changed.added),
            len(changed.removed),
        )
        for changed in changeset.files
    )


def analyse(changeset: ChangeSet, config: ReviewConfig) -> Analysis:
    global _memo
    signature = _signature(changeset)
    memo = _memo
    if memo and memo[0]() is changeset and memo[1] == config and memo[2] == signature:
        return memo[3]
    analysis = _analyse(changeset, config)
    _memo = (weakref.ref(changeset), config, signature, analysis)
    return analysis


def _active(config: ReviewConfig) -> bool:
    # With no minimum age nothing can be too fresh, and nothing needs dating.
    return config.min_age_days > 0 and (config.enabled(RULE) or config.enabled(UNVERIFIABLE))


def packages_to_look_up(changeset: ChangeSet, config: ReviewConfig) -> list[Package]:
    """Registry versions the change introduces (exempt ones left out), for the pipeline."""
    if not _active(config):
        return []
    registry = analyse(changeset, config).registry
    return sorted({Package(e.dep.ecosystem, e.dep.name, e.dep.version) for e in registry})


# ---- messages ------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def humanize_age(age: timedelta) -> str:
    """ "about 40 minutes", "about 2 hours", "about 3 days"."""
    minutes = round(max(age.total_seconds(), 0) / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"about {_plural(minutes, 'minute')}"
    hours = round(minutes / 60)
    if hours < 24:
        return f"about {_plural(hours, 'hour')}"
    return f"about {_plural(round(hours / 24), 'day')}"


def threshold_text(days: float) -> str:
    if float(days).is_integer():
        return _plural(int(days), "day")
    hours = days * 24
    if float(hours).is_integer():
        return _plural(int(hours), "hour")
    return f"{days:g} days"


def _name(dep: Dep) -> str:
    return f"{inline_code(dep.name)} {inline_code(dep.version)}"


def fresh_message(dep: Dep, published: datetime, now: datetime, days: float) -> str:
    eligible = published + timedelta(days=days)
    registry = REGISTRY_NAMES.get(dep.ecosystem, dep.ecosystem)
    return (
        f"{_name(dep)} was published to {registry} at {iso(published)}, "
        f"{humanize_age(now - published)} ago; this repository accepts dependency versions "
        f"only once they are at least {threshold_text(days)} old, so this one becomes eligible "
        f"on {iso(eligible)}. Keep the previous version until then (a fresh release has had no "
        "time to be vetted or yanked), or list the package under `exempt` if it is your own."
    )


def undatable_message(dep: Dep) -> str:
    return (
        f"{inline_code(dep.name)} ({inline_code(dep.version)}) cannot be checked for age: "
        f"{dep.source}, and no registry records when it was published. Prefer a released "
        "version from the registry, or review that source by hand."
    )


def lookup_failed_message(dep: Dep, error: str, days: float) -> str:
    registry = REGISTRY_NAMES.get(dep.ecosystem, dep.ecosystem)
    return (
        f"{registry} could not date {_name(dep)}: {error}. Its age is unknown; check by hand "
        f"that it was published at least {threshold_text(days)} ago, or re-run the review."
    )


def _finding(rule: str, severity: Severity, entry: Introduced, message: str) -> Finding:
    first, *rest = entry.locations
    package = Package(entry.dep.ecosystem, entry.dep.name, entry.dep.version)
    return Finding(
        rule=rule,
        severity=severity,
        path=first.path,
        line=first.line,
        message=message,
        code=entry.code,
        also_at=tuple(rest),
        identity=str(package),
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NOTE_NAMES])
    more = len(names) - _NOTE_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def run(ctx: CheckContext) -> CheckResult:
    config = ctx.config
    if not _active(config):
        return CheckResult()
    analysis = analyse(ctx.changeset, config)
    days = config.min_age_days
    findings: list[Finding] = []
    incomplete = list(analysis.notes)
    not_looked_up: list[str] = []
    unverified: list[str] = [f"{e.dep.name} {e.dep.version}" for e in analysis.undatable]
    for entry in analysis.registry:
        dep = entry.dep
        answer: PublishTime | None = ctx.publish_times.get(
            Package(dep.ecosystem, dep.name, dep.version)
        )
        if answer is None:
            not_looked_up.append(f"{dep.name} {dep.version}")
        elif answer.published is None:
            unverified.append(f"{dep.name} {dep.version}")
            if not config.enabled(UNVERIFIABLE):
                continue
            error = answer.error or "no publish time in the answer"
            message = lookup_failed_message(dep, error, days)
            findings.append(_finding(UNVERIFIABLE, Severity.SUGGESTION, entry, message))
        else:
            published = answer.published
            if published.tzinfo is None:
                published = published.replace(tzinfo=UTC)
            if config.enabled(RULE) and ctx.now - published < timedelta(days=days):
                message = fresh_message(dep, published, ctx.now, days)
                findings.append(_finding(RULE, Severity.CRITICAL, entry, message))
    for entry in analysis.undatable if config.enabled(UNVERIFIABLE) else ():
        findings.append(
            _finding(UNVERIFIABLE, Severity.SUGGESTION, entry, undatable_message(entry.dep))
        )
    if not_looked_up:
        incomplete.append(
            f"{len(not_looked_up)} new dependency version(s) were not looked up in their "
            f"registry, so their age is unknown: {_names(not_looked_up)}"
        )
    if unverified:
        # Whatever the rule settings say, an age we could not read is work not done: the
        # review must not come out green because of it.
        incomplete.append(
            f"The age of {len(unverified)} new dependency version(s) could not be verified: "
            + _names(unverified)
        )
    findings.sort(key=lambda f: (f.path, f.line or 0, f.rule))
    return CheckResult(tuple(findings), tuple(incomplete))


CHECK = Check(
    rule=RULE,
    title="Dependency versions younger than the minimum age",
    run=run,
    severities={RULE: Severity.CRITICAL, UNVERIFIABLE: Severity.SUGGESTION},
)
