"""Rule local-stop-uses-pause: a stop of a local conversation that pauses instead of interrupting.

``POST /api/conversations/{id}/pause`` lets the in-flight LLM call finish before the agent
stops, which can take a minute; ``POST …/interrupt`` (agent-server >= 1.23.0) cancels it at
once and stays resumable. What is matched is the call, never the enclosing function's name:

- ``ConversationClient#pauseConversation(id)`` and raw posts to ``…/conversations/{id}/pause``
  are how front ends and services stop a conversation: reported wherever they run on a local
  backend (a function *named* ``pauseConversation`` that calls it is exactly that bug). The
  one exception is the endpoint's own binding: a raw post inside a method named for pausing
  (``ConversationClient.pauseConversation``, ``RemoteConversation.pause``);
- SDK ``conversation.pause()`` is a documented feature of its own, so it is reported only in
  a stop handler: the nearest enclosing name that says stop/cancel/abort/halt/interrupt/kill/
  terminate rather than pause (a function, variable, class field, object key, JSX attribute,
  keyword argument, component), or a handler registered for a stop (``process.on("SIGINT",
  …)``, ``addEventListener("abort", …)``, ``signal.signal(signal.SIGINT, …)``,
  ``onStop={handler}``, ``on_cancel=handler``, a button labelled Stop, ``except
  KeyboardInterrupt:`` / ``CancelledError``, the branch of ``if (command === "stop")``);
- a call of a wrapper (same file or another changed file, one hop) whose body pauses is
  reported at the call when it sits in a stop handler or is named ``pauseConversation`` —
  unless the change adds that pause inside the wrapper, where it is reported instead.

Code that only runs on a cloud backend is exempt: there the stop pauses the whole sandbox on
the app server (``/api/v1/sandboxes/{id}/pause``), a different operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ast_grep_py import SgNode

from reviewbot.checks.agent_server import (
    FUNCTION_KINDS,
    SOURCE_SUFFIXES,
    ParsedFile,
    Workspace,
    callee_name,
    callee_receiver,
    code_excerpt,
    conversation_action,
    enclosing_function,
    end_line,
    find_kinds,
    function_name,
    holder_name,
    http_call,
    in_cloud_branch,
    is_method,
    name_words,
    parameters_of,
    positional_args,
    resolve_name,
    start_line,
    string_value,
    unwrap,
)
from reviewbot.checks.base import Check, CheckContext
from reviewbot.models import CheckResult, Finding, Severity

RULE = "local-stop-uses-pause"

STOP_WORDS = frozenset(
    {
        "stop",
        "stops",
        "stopped",
        "stopping",
        "cancel",
        "cancels",
        "cancelled",
        "canceled",
        "cancelling",
        "canceling",
        "cancellation",
        "abort",
        "aborted",
        "aborting",
        "halt",
        "halted",
        "halting",
        "interrupt",
        "interrupted",
        "interrupting",
        "interruption",
        "kill",
        "killed",
        "terminate",
        "terminated",
        "termination",
        "sigint",
        "sigterm",
    }
)
PAUSE_WORDS = frozenset({"pause", "paused", "pausing", "pauses", "suspend", "suspended"})

# Calls that register a handler for the event named by their first argument.
_REGISTRATIONS = frozenset(
    {"on", "once", "addEventListener", "addListener", "signal", "add_signal_handler"}
)
_LABEL_ATTRIBUTES = frozenset({"aria-label", "title", "label", "name", "id", "data-testid"})
_CONVERSATION_TYPES = frozenset({"Conversation", "RemoteConversation", "LocalConversation"})


def _verdict(names: list[str]) -> str | None:
    words = {word for name in names for word in name_words(name)}
    if words & STOP_WORDS:
        return "stop"
    if words & PAUSE_WORDS:
        return "pause"
    return None


def _first_named(node: SgNode) -> SgNode | None:
    named = [child for child in node.named_children() if child.kind() != "comment"]
    return named[0] if named else None


def _registered_event(call: SgNode) -> str | None:
    """``"SIGINT"`` of ``process.on("SIGINT", fn)`` / ``signal.signal(signal.SIGINT, fn)``."""
    if callee_name(call) not in _REGISTRATIONS:
        return None
    args = positional_args(call)
    if len(args) < 2:
        return None
    event = unwrap(args[0])
    return string_value(event) or event.text()


def _node_text(node: SgNode | None) -> list[str]:
    return [node.text()] if node is not None else []


def _names_at(ancestor: SgNode, child: SgNode) -> list[str]:
    """The names an enclosing node gives the code below it (see the module docstring)."""
    kind = ancestor.kind()
    if kind in FUNCTION_KINDS and kind != "lambda":
        return _node_text(ancestor.field("name"))
    if kind in _HOLDER_KINDS:
        holder = holder_name(ancestor)
        return [holder] if holder else []
    if kind in ("keyword_argument", "jsx_attribute"):
        return _node_text(ancestor.field("name") or _first_named(ancestor))
    if kind in ("class_declaration", "class_definition", "class"):
        return _node_text(ancestor.field("name"))
    if kind in ("jsx_opening_element", "jsx_self_closing_element"):
        return _jsx_labels(ancestor)
    if kind == "jsx_element":
        return [text.text() for text in ancestor.named_children() if text.kind() == "jsx_text"]
    if kind == "except_clause":
        return [part.text() for part in ancestor.named_children() if part.kind() != "block"]
    if kind in ("call_expression", "call"):
        event = _registered_event(ancestor)
        return [event] if event else []
    if kind in ("if_statement", "elif_clause"):
        condition, consequence = ancestor.field("condition"), ancestor.field("consequence")
        if condition is not None and consequence is not None and consequence == child:
            strings = condition.find_all(kind="string")
            return [value for node in strings if (value := string_value(node))]
    if kind == "switch_case":
        case = ancestor.field("value")
        label = string_value(case) if case is not None else None
        return [label] if label else []
    return []


_HOLDER_KINDS = frozenset(
    {
        "variable_declarator",
        "public_field_definition",
        "field_definition",
        "pair",
        "assignment_expression",
        "assignment",
    }
)


def _jsx_labels(element: SgNode) -> list[str]:
    labels: list[str] = []
    for attribute in element.named_children():
        if attribute.kind() != "jsx_attribute":
            continue
        name = _first_named(attribute)
        value = attribute.named_children()[-1] if attribute.named_children() else None
        if name is None or value is None or name.text() not in _LABEL_ATTRIBUTES:
            continue
        text = string_value(value)
        if text:
            labels.append(text)
    return labels


def _registered_as(name: str, parsed: ParsedFile) -> list[str]:
    """Names under which a function called ``name`` is registered as a handler elsewhere:
    ``onStop={name}``, ``{ onCancel: name }``, ``on_stop=name``, ``process.on("SIGINT", name)``.
    """
    found: list[str] = []
    for reference in parsed.references(name):
        found.extend(_registration_names(reference))
    return found


def _registration_names(reference: SgNode) -> list[str]:
    node = reference
    holder = node.parent()
    if holder is not None and holder.kind() in ("member_expression", "attribute"):
        if holder.field("property") != node and holder.field("attribute") != node:
            return []
        node, holder = holder, holder.parent()  # this.handleStop
    if holder is not None and holder.kind() == "jsx_expression":
        node, holder = holder, holder.parent()
    if holder is None:
        return []
    if holder.kind() in ("pair", "keyword_argument", "jsx_attribute"):
        value = holder.field("value") or holder.named_children()[-1]
        return _names_at(holder, node) if value == node else []
    if holder.kind() in ("arguments", "argument_list"):
        call = holder.parent()
        event = _registered_event(call) if call is not None else None
        return [event] if event else []
    return []


_HANDLER_HOLDERS = FUNCTION_KINDS | {
    "variable_declarator",
    "public_field_definition",
    "field_definition",
    "assignment_expression",
    "assignment",
}


@dataclass(frozen=True)
class Context:
    verdict: str | None  # "stop" | "pause" | None (neither)
    label: str = ""  # the name that decided, for the message


def context_of(node: SgNode, parsed: ParsedFile) -> Context:
    """Whether ``node`` runs in a stop handler, a deliberate pause, or neither."""
    child = node
    for ancestor in node.ancestors():
        names = _names_at(ancestor, child)
        if ancestor.kind() in _HANDLER_HOLDERS and names and _verdict(names) is None:
            names = names + _registered_as(names[0], parsed)
        verdict = _verdict(names)
        if verdict is not None:
            return Context(verdict, names[0] if names else "")
        child = ancestor
    return Context(None)


# ---- what pauses --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """A call that pauses a conversation, and how it does so."""

    call: SgNode
    how: str  # "client" | "raw" | "sdk" | "wrapper"
    target: str = ""  # the wrapper's name for "wrapper"


def _conversation_like(receiver: SgNode, parsed: ParsedFile) -> bool:
    """``conversation``, ``self.conversation``, ``conv``, or a name bound to a Conversation."""
    words = name_words(receiver.text())
    if {"conversation", "conv", "convo"} & set(words):
        return True
    if receiver.kind() != "identifier":
        return False
    binding = resolve_name(receiver.text(), receiver, parsed)
    if binding.kind == "value" and binding.node is not None:
        value = unwrap(binding.node)
        return value.kind() in ("call", "new_expression") and callee_name(value) in (
            _CONVERSATION_TYPES
        )
    if binding.kind == "param" and binding.scope is not None:
        param = parameters_of(binding.scope).get(receiver.text())
        annotation = param.field("type") if param is not None else None
        return annotation is not None and any(
            name in annotation.text() for name in _CONVERSATION_TYPES
        )
    return False


def direct_pauses(under: SgNode, parsed: ParsedFile, workspace: Workspace) -> Iterator[Pause]:
    """Calls under ``under`` that pause a conversation themselves, or may through a wrapper."""
    for call in find_kinds(under, parsed.language, "call_expression", "call"):
        name = callee_name(call)
        if name == "pauseConversation":
            local = workspace.callee_definitions(call, parsed)
            yield Pause(call, "wrapper", name) if local else Pause(call, "client")
            continue
        if name == "pause" and not positional_args(call):
            receiver = callee_receiver(call)
            if receiver is not None and _conversation_like(receiver, parsed):
                yield Pause(call, "sdk")
            continue
        request = http_call(call, parsed)
        if request is not None and conversation_action(request.shape) == "pause":
            if request.method in (None, "POST"):
                yield Pause(call, "raw")
            continue
        if name and workspace.callee_definitions(call, parsed):
            yield Pause(call, "wrapper", name)


def _is_binding(pause: Pause) -> bool:
    """A raw post inside a method named for pausing: the client's own ``pauseConversation``
    (or ``pause``) implementing the endpoint, not a stop."""
    if pause.how != "raw":
        return False
    function = enclosing_function(pause.call)
    if function is None or not is_method(function):
        return False
    words = set(name_words(function_name(function) or ""))
    return bool(words & PAUSE_WORDS) and not words & STOP_WORDS


def _touched(pause: Pause, parsed: ParsedFile) -> list[int]:
    return parsed.added_in(start_line(pause.call), end_line(pause.call))


# Per review: whether a wrapper pauses (True), does not (False), or is reported inside (None).
_Memo = dict[SgNode, bool | None]


def _function_pauses(
    where: ParsedFile, function: SgNode, workspace: Workspace, memo: _Memo
) -> bool | None:
    if function not in memo:
        memo[function] = False  # a wrapper reached again while judging itself does not pause
        verdict: bool | None = False
        for inner in direct_pauses(function, where, workspace):
            if inner.how == "wrapper" or in_cloud_branch(inner.call):
                continue
            if _finding(inner, where, workspace, memo) is not None:
                verdict = None  # the change adds this pause: it is reported where it is
                break
            verdict = True
        memo[function] = verdict
    return memo[function]


def _wrapper_pauses(call: SgNode, parsed: ParsedFile, workspace: Workspace, memo: _Memo) -> bool:
    """One hop: whether a called function pauses (outside its cloud-only branches) and is
    not already reported for it."""
    verdicts = [
        _function_pauses(where, function, workspace, memo)
        for where, function in workspace.callee_definitions(call, parsed)
    ]
    return True in verdicts and None not in verdicts


_FIX = (
    "waits for the in-flight LLM call to finish before the agent stops; on a local "
    "agent-server call `interruptConversation(id)` (POST …/conversations/{{id}}/interrupt, "
    "agent-server >= 1.23.0), which cancels it at once."
)
_MESSAGES = {
    "client": "Stopping with `pauseConversation()`{where} " + _FIX,
    "raw": "POST …/conversations/{{id}}/pause{where} " + _FIX,
    "sdk": (
        "`pause()`{where} waits for the in-flight LLM call to finish; use "
        "`conversation.interrupt()` (agent-server >= 1.23.0 and, in Python, SDK >= 1.24.0 — on "
        "SDK 1.23.x it still posts /pause) or `interruptConversation(id)`."
    ),
    "wrapper": "Stopping through `{target}()`, which pauses the conversation,{where} " + _FIX,
}


def _finding(pause: Pause, parsed: ParsedFile, workspace: Workspace, memo: _Memo) -> Finding | None:
    """Client and raw pauses on a local backend always stop the agent the slow way; an SDK
    ``pause()`` or a wrapper call only counts inside a stop handler (a wrapper named
    ``pauseConversation`` anywhere)."""
    added = _touched(pause, parsed)
    if not added or _is_binding(pause):
        return None
    if pause.how == "wrapper" and not _wrapper_pauses(pause.call, parsed, workspace, memo):
        return None
    if in_cloud_branch(pause.call):
        return None
    context = context_of(pause.call, parsed)
    stop = context.verdict == "stop"
    if pause.how == "sdk" and not stop:
        return None
    if pause.how == "wrapper" and not (stop or pause.target == "pauseConversation"):
        return None
    where = f" in stop handler `{context.label}`" if stop and context.label else ""
    message = _MESSAGES[pause.how].format(where=where, target=pause.target)
    return Finding(
        rule=RULE,
        severity=Severity.IMPORTANT,
        path=parsed.path,
        line=added[0],
        message=message,
        code=code_excerpt(pause.call),
    )


def _findings(parsed: ParsedFile, workspace: Workspace, memo: _Memo) -> Iterator[Finding]:
    for pause in direct_pauses(parsed.root, parsed, workspace):
        finding = _finding(pause, parsed, workspace, memo)
        if finding is not None:
            yield finding


def run(ctx: CheckContext) -> CheckResult:
    workspace = Workspace.for_changeset(ctx.changeset)
    findings: list[Finding] = []
    incomplete: list[str] = []
    memo: _Memo = {}
    for source in ctx.sources(SOURCE_SUFFIXES, skip_tests=True):
        if source.path in workspace.too_large:
            if workspace.unparsed_may_matter(source.path):
                size = workspace.too_large[source.path]
                incomplete.append(f"{source.path}: too large to parse ({size} bytes)")
            continue
        # The workspace parsed the same text ctx.sources hands out (whole or rebuilt).
        parsed = workspace.get(source.path)
        if parsed is not None and workspace.has_signal:
            findings.extend(_findings(parsed, workspace, memo))
    return CheckResult(findings=tuple(findings), incomplete=tuple(incomplete))


CHECK = Check(
    rule=RULE,
    title="Local conversation stop uses pause instead of interrupt",
    run=run,
    severities={RULE: Severity.IMPORTANT},
)
