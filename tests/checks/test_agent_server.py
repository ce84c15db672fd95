"""Shared ground of the conversation rules: signals, URLs, cloud guards, line bookkeeping.

Also holds the small helpers the two rule test files use to build changed files.
"""

from __future__ import annotations

import difflib
import textwrap

import pytest

from reviewbot.checks import local_stop_pause, send_missing_run
from reviewbot.checks.agent_server import (
    Workspace,
    conversation_action,
    in_cloud_branch,
    language_for,
    parse_changed,
    removal_positions,
    socket_kind,
    touches_conversation_api,
    url_shape,
)
from reviewbot.checks.base import MAX_PARSE_BYTES, Check, CheckContext
from reviewbot.diff import parse_diff
from reviewbot.models import ChangedFile, ChangeSet, CheckResult, FileStatus

# ---- helpers shared with the rule tests ---------------------------------------------------


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def whole_file(path: str, text: str) -> ChangedFile:
    """A new file: every line added."""
    text = source(text)
    lines = dict(enumerate(text.splitlines(), start=1))
    return ChangedFile(
        path=path,
        status=FileStatus.ADDED,
        added=dict(lines),
        visible=dict(lines),
        head_text=text,
    )


def partly_added(path: str, text: str, marker: str = "NEW") -> ChangedFile:
    """A modified file whose lines containing ``marker`` are the added ones."""
    text = source(text)
    lines = dict(enumerate(text.splitlines(), start=1))
    return ChangedFile(
        path=path,
        status=FileStatus.MODIFIED,
        added={number: line for number, line in lines.items() if marker in line},
        visible=dict(lines),
        head_text=text,
    )


def _diff(path: str, base: str, head: str) -> str:
    lines = difflib.unified_diff(
        base.splitlines(keepends=True),
        head.splitlines(keepends=True),
        fromfile=f"a/{path}",
        tofile=f"b/{path}",
    )
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


def from_versions(path: str, base: str, head: str, *, whole: bool = True) -> ChangedFile:
    """A modified file as git would diff it; ``whole=False`` keeps only the patch."""
    base, head = source(base), source(head)
    (changed,) = parse_diff(_diff(path, base, head))
    if whole:
        changed.head_text, changed.base_text = head, base
    return changed


def marked_line(text: str, marker: str = "HERE") -> int:
    for number, line in enumerate(source(text).splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"no {marker} marker in the case")


def review(check: Check, *files: ChangedFile) -> CheckResult:
    changeset = ChangeSet(base="base", head="head", files=list(files))
    return check.run(CheckContext(changeset))


# ---- languages and lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a.ts", "typescript"),
        ("a.mts", "typescript"),
        ("a.cts", "typescript"),
        ("a.tsx", "tsx"),
        ("a.js", "javascript"),
        ("a.jsx", "javascript"),
        ("a.mjs", "javascript"),
        ("a.cjs", "javascript"),
        ("pkg/a.py", "python"),
        ("README.md", None),
        ("Dockerfile", None),
    ],
)
def test_language_from_suffix(path: str, language: str | None) -> None:
    assert language_for(path) == language


def test_removed_lines_are_placed_between_head_lines() -> None:
    changed = from_versions(
        "a.ts",
        "a\nb\nrun: true\nc\nd\ne\n",
        "a\nb\nc\nX\nd\n",
    )
    positions = removal_positions(changed)
    # "run: true" (old 3) sat before head line 3 ("c"); "e" (old 6) after the last line.
    assert positions == {3: 3, 6: 6}


# ---- URLs ---------------------------------------------------------------------------------


def _first_call_url(code: str, path: str = "a.ts") -> str | None:
    parsed = parse_changed(whole_file(path, code))
    assert parsed is not None and not isinstance(parsed, int)
    kind = "call" if parsed.python else "call_expression"
    call = parsed.root.find(kind=kind)
    assert call is not None
    args = call.field("arguments")
    assert args is not None
    return url_shape(args.named_children()[0], parsed)


@pytest.mark.parametrize(
    ("code", "path", "shape"),
    [
        ("f(`${base}/api/conversations/${id}/events`)", "a.ts", "{}/api/conversations/{}/events"),
        (
            'f(base + "/api/conversations/" + id + "/events")',
            "a.js",
            "{}/api/conversations/{}/events",
        ),
        (
            "const u = `/api/conversations/${id}/pause`;\nf(u)",
            "a.ts",
            "/api/conversations/{}/pause",
        ),
        ('f(f"{base}/api/conversations/{cid}/events")', "a.py", "{}/api/conversations/{}/events"),
        ('f("/api/conversations/%s/events" % cid)', "a.py", "/api/conversations/%s/events"),
        ('f("{}/api/conversations/{}/run".format(b, c))', "a.py", "{}/api/conversations/{}/run"),
        ("f(someUrl)", "a.ts", None),
    ],
)
def test_url_shapes(code: str, path: str, shape: str | None) -> None:
    assert _first_call_url(code, path) == shape


@pytest.mark.parametrize(
    ("shape", "action"),
    [
        ("{}/api/conversations/{}/events", "events"),
        ("/api/conversations/{}/events/", "events"),
        ("/api/conversations/{}/events?x=1", "events"),
        ("/api/conversations/{}/events/search", "events/search"),
        ("/api/conversations/{}/events/respond_to_confirmation", "events/respond_to_confirmation"),
        ("/api/conversations/{}/pause", "pause"),
        ("/api/v1/app-conversations/{}/pause", None),
        ("/api/v1/sandboxes/{}/pause", None),
        ("/api/conversations", None),
    ],
)
def test_conversation_action(shape: str, action: str | None) -> None:
    assert conversation_action(shape) == action


def test_socket_kind() -> None:
    assert socket_kind("{}/sockets/events/{}") == "events"
    assert socket_kind("{}/sockets/bash-events/{}") == "bash-events"
    assert socket_kind("{}/api/conversations") is None


# ---- cloud-only code ----------------------------------------------------------------------

_CLOUD_TS = """
function a(backend, id) {
  if (backend.kind === "cloud") { target(1); return; }
  target(2);
  if (backend.kind !== "cloud") { target(3); } else { target(4); }
  if (!isCloud()) { target(5); } else { target(6); }
  if (backend.kind == "cloud" && ready) { target(7); } else { target(8); }
  const x = isCloudBackend ? target(9) : target(10);
  isCloud && target(11);
  switch (backend.kind) { case "cloud": target(12); break; default: target(13); }
  if (kind === BackendKind.Cloud) { target(14); }
}
function b(backend) {
  if (backend.kind !== "cloud") { return target(15); }
  target(16);
}
"""
_CLOUD_PY = """
def a(backend):
    if backend.kind == "cloud":
        target(1)
    elif other:
        target(2)
    else:
        target(3)
    if not is_cloud():
        target(4)
    else:
        target(5)
    if backend.kind != "cloud":
        return target(6)
    target(7)
"""


@pytest.mark.parametrize(
    ("code", "path", "cloud"),
    [
        (_CLOUD_TS, "a.ts", {1, 4, 6, 7, 9, 11, 12, 14, 16}),
        (_CLOUD_PY, "a.py", {1, 5, 7}),
    ],
)
def test_cloud_branches(code: str, path: str, cloud: set[int]) -> None:
    parsed = parse_changed(whole_file(path, code))
    assert parsed is not None and not isinstance(parsed, int)
    kind = "call" if parsed.python else "call_expression"
    found = set()
    for call in parsed.root.find_all(kind=kind):
        function = call.field("function")
        args = call.field("arguments")
        if function is None or function.text() != "target" or args is None:
            continue
        if in_cloud_branch(call):
            found.add(int(args.named_children()[0].text()))
    assert found == cloud


# ---- the agent-server signal --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code", "touches"),
    [
        ("a.ts", 'import { ConversationClient } from "@openhands/typescript-client";', True),
        ("a.ts", 'import { X } from "@openhands/typescript-client/clients";', True),
        ("a.js", 'const { X } = require("@openhands/typescript-client");', True),
        ("a.py", "from openhands.sdk import Conversation", True),
        ("a.py", "from openhands.sdk.conversation.impl import RemoteConversation", True),
        ("a.py", "import openhands.sdk as sdk", True),
        ("a.py", "from openhands import sdk", True),
        ("a.ts", "const u = `${wsBase}/sockets/events/${id}`;", True),
        ("a.ts", "fetch(`${base}/api/conversations/${id}/events`, init);", True),
        ("a.ts", 'fetch(base + "/api/conversations/" + id + "/events/search");', True),
        ("a.py", 'r = httpx.get(f"{base}/api/conversations/{cid}/events/count")', True),
        ("a.ts", "const payload = { initial_message: message };", True),
        ("a.py", 'payload = {"initial_message": message}', True),
        ("a.py", "request = StartConversationRequest(initial_message=message)", True),
        ("a.ts", "fetch(`${base}/api/conversations/${id}/messages`, init);", False),
        ("a.ts", "fetch(`${base}/api/conversations/${id}/pause`, init);", False),
        ("a.ts", 'import { Client } from "@other/typescript-client";', False),
        ("a.py", "from openhands_cli import sdk_helpers", False),
        ("a.py", "initial_message = 'hello'", False),
        ("a.ts", "// talks to /api/conversations/1/events one day", False),
        ("README.md", "import { X } from '@openhands/typescript-client'", False),
    ],
)
def test_touches_conversation_api(path: str, code: str, touches: bool) -> None:
    assert touches_conversation_api(ChangeSet("a", "b", [whole_file(path, code)])) is touches


def test_signal_in_the_whole_head_text_counts_even_if_not_added() -> None:
    code = """
    import { ConversationClient } from "@openhands/typescript-client";
    export const x = 1; // NEW
    """
    changeset = ChangeSet("a", "b", [partly_added("src/a.ts", code)])
    assert touches_conversation_api(changeset)


def test_deleted_files_do_not_touch_the_api() -> None:
    changed = whole_file("src/a.ts", 'import { X } from "@openhands/typescript-client";')
    changed.status = FileStatus.DELETED
    assert not touches_conversation_api(ChangeSet("a", "b", [changed]))


def test_patch_only_file_uses_the_visible_lines() -> None:
    base = "export const a = 1;\n"
    head = 'import { X } from "@openhands/typescript-client";\nexport const a = 1;\n'
    changed = from_versions("src/a.ts", base, head, whole=False)
    assert changed.head_text is None
    assert touches_conversation_api(ChangeSet("a", "b", [changed]))


# ---- what cannot be parsed ----------------------------------------------------------------


@pytest.mark.parametrize("check", [send_missing_run.CHECK, local_stop_pause.CHECK])
def test_too_large_files_are_reported_as_incomplete(check: Check) -> None:
    filler = "// " + "x" * 100 + "\n"
    text = 'import { X } from "@openhands/typescript-client";\n' + filler * (
        MAX_PARSE_BYTES // len(filler) + 1
    )
    result = review(check, whole_file("src/big.ts", text))
    assert result.findings == ()
    size = len(text.encode())
    assert result.incomplete == (f"src/big.ts: too large to parse ({size} bytes)",)


@pytest.mark.parametrize("check", [send_missing_run.CHECK, local_stop_pause.CHECK])
def test_too_large_files_without_anything_relevant_are_not_noted(check: Check) -> None:
    text = "// nothing here\n" * (MAX_PARSE_BYTES // 16 + 1)
    assert review(check, whole_file("dist/bundle.js", text)) == CheckResult()


def test_workspace_resolves_member_calls_to_methods_only() -> None:
    code = """
    export function pauseConversation(id) { return client.interruptConversation(id); }
    class Api { sendEvent(id, m) { return 1; } }
    function stop() { client.pauseConversation(id); pauseConversation(id); api.sendEvent(1, 2); }
    """
    workspace = Workspace(ChangeSet("a", "b", [whole_file("src/a.ts", code)]))
    parsed = workspace.get("src/a.ts")
    assert parsed is not None
    calls = {call.text(): call for call in parsed.root.find_all(kind="call_expression")}
    assert workspace.callee_definitions(calls["client.pauseConversation(id)"], parsed) == []
    assert len(workspace.callee_definitions(calls["pauseConversation(id)"], parsed)) == 1
    assert len(workspace.callee_definitions(calls["api.sendEvent(1, 2)"], parsed)) == 1
