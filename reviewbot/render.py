"""Render every piece of posted markdown from the Jinja2 templates in ``templates/``.

One environment, StrictUndefined: a template that names a missing value fails loudly in
tests instead of posting a blank to GitHub.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reviewbot.models import InlineComment, Review, Severity

# A code span: a run of backticks, then anything up to the same run (CommonMark).
_CODE_SPAN = re.compile(r"((`+)(?:(?!\2).)+?\2)", re.DOTALL)
_MENTION = re.compile(r"(?<![\w.@/-])@(?=[A-Za-z0-9])")


def _resource_root() -> Path:
    """Where templates/ and skills/ are: beside the package in a checkout (and an editable
    install, as in the container image), else where a regular install put them
    (``share/reviewbot`` under the environment's prefix, see pyproject's data-files)."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "templates").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "reviewbot"


PROJECT_ROOT = _resource_root()
TEMPLATES_DIR = PROJECT_ROOT / "templates"


@cache
def environment(directory: Path = TEMPLATES_DIR) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,  # markdown, not HTML; user text is escaped with the md filter
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = escape_markdown
    env.filters["code"] = inline_code
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def escape_markdown(text: object) -> str:
    """Neutralise text from a PR (paths, messages) so it cannot open HTML or mention users.

    Code spans are left alone: markdown shows their content literally already, and an
    entity there would show up as "&lt;".
    """
    value = str(text)
    parts: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(value):
        parts += [_escape_prose(value[position : span.start()]), span.group(0)]
        position = span.end()
    parts.append(_escape_prose(value[position:]))
    return "".join(parts)


def _escape_prose(value: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Only a mention-shaped "@name" pings someone; "left-pad@1.3.1" stays copyable.
    return _MENTION.sub("@\u200b", value)


def inline_code(text: object) -> str:
    """Wrap text in a backtick fence long enough that the text cannot close it."""
    value = str(text).replace("\n", " ")
    fence = "`"
    while fence in value:
        fence += "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


# GitHub refuses review bodies over 65,536 characters; keep a margin for its own escaping.
MAX_BODY_CHARS = 65_000


@dataclass(frozen=True)
class RenderedReview:
    body: str
    comments: tuple[InlineComment, ...]


def render_review(review: Review) -> RenderedReview:
    """The review body and its inline comments, exactly as they would be posted."""
    comments = tuple(
        InlineComment(
            path=finding.path,
            line=finding.line or 1,
            body=render("inline_comment.md.j2", finding=finding),
            fingerprint=finding.fingerprint,
        )
        for finding in review.inline
    )
    listed = [f for f in review.findings if f not in review.still_open]
    limit = len(listed)
    while True:
        shown = listed[:limit]
        left_out = len(listed) - limit
        truncated = (
            f"{left_out} more finding{'s' if left_out != 1 else ''} left out to keep this "
            "review under GitHub's size limit."
            if left_out
            else ""
        )
        body = render(
            "review.md.j2",
            review=review,
            critical=[f for f in shown if f.severity is Severity.CRITICAL],
            improvements=[f for f in shown if f.severity is not Severity.CRITICAL],
            inline=review.inline,
            truncated=truncated,
        )
        if len(body) <= MAX_BODY_CHARS:
            return RenderedReview(body=body, comments=comments)
        if limit == 0:
            cut = "\n\n_(review truncated to fit GitHub's size limit)_\n"
            return RenderedReview(body=body[: MAX_BODY_CHARS - len(cut)] + cut, comments=comments)
        limit //= 2


def review_json(review: Review) -> dict[str, object]:
    """The ``--format json`` contract of ``reviewbot review``; keep its keys stable."""
    return {
        "base": review.base,
        "head": review.head,
        "rating": review.rating.value,
        "risk": review.risk.value,
        "verdict": review.verdict.value,
        "event": review.event.value,
        "touches_conversation_api": review.touches_conversation_api,
        "findings": [
            {
                "rule": finding.rule,
                "severity": finding.severity.value,
                "path": finding.path,
                "line": finding.line,
                "message": finding.message,
                "fingerprint": finding.fingerprint,
                "also_at": [{"path": p.path, "line": p.line} for p in finding.also_at],
            }
            for finding in review.findings
        ],
        "guidelines": [
            {"name": g.name, "path": g.path, "source": g.source} for g in review.guidelines
        ],
        "notes": list(review.notes),
        "key_insight": review.key_insight,
    }


def review_markdown(rendered: RenderedReview) -> str:
    """What ``reviewbot review`` prints: the body, then each inline comment with its place."""
    parts = [rendered.body.rstrip("\n")]
    for comment in rendered.comments:
        parts.append(
            f"---\n#### Inline comment on `{comment.path}:{comment.line}`\n\n"
            + comment.body.rstrip("\n")
        )
    return "\n\n".join(parts) + "\n"
