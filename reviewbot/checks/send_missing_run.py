"""Rule conversation-send-missing-run: a message to an agent-server that never starts the agent.

``POST /api/conversations/{id}/events`` stores the message and leaves the agent idle unless
the body says ``run: true`` (the server's default is false), so a REST send without it is
critical. The start payload's ``initial_message`` and WebSocket messages start the agent
anyway; there ``run: true`` is the convention since async conversations (a suggestion).

What is read as a send:
- typescript-client ``sendEvent(id, message, options)``: options ``{ run: true }`` or a
  message carrying ``run: true`` with no options; ``{}``/``{ run: false }``/none is missing;
- any HTTP call posting to ``…/conversations/{id}/events`` (fetch, axios, ky, proxy helpers,
  httpx, requests …) and its body, followed through one same-function variable and its later
  ``body.run = true`` / ``payload["run"] = True``;
- Python SDK ``send_message()`` with no ``.run()``/``.arun()`` on the same object after it
  in the same function;
- ``initial_message`` values and ``send(JSON.stringify(message))`` on an events socket.

A call of a wrapper (same file or another changed file, one hop) whose body adds
``run: true`` is fine; the wrapper's own send is judged where it is. ``run: someFlag`` is a
decision made in code and is not flagged; ``{ run: true, ...rest }`` is a suggestion because
the later spread may override it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from ast_grep_py import SgNode, SgRoot

from reviewbot.checks.agent_server import (
    CALL_KINDS,
    ParsedFile,
    Workspace,
    callee_name,
    callee_receiver,
    code_excerpt,
    contains,
    conversation_action,
    enclosing_function,
    end_line,
    find_kinds,
    http_call,
    imports_sdk,
    in_cloud_branch,
    is_app_server_url,
    key_name,
    keyword_args,
    name_words,
    nodes_between,
    object_entries,
    positional_args,
    removal_positions,
    resolve_name,
    returned_values,
    socket_kind,
    start_line,
    string_value,
    unwrap,
    url_shape,
)
from reviewbot.checks.base import MAX_PARSE_BYTES, Check, CheckContext
from reviewbot.models import CheckResult, Finding, Severity

RULE = "conversation-send-missing-run"


class Run(Enum):
    """What a message (or options object) says about ``run``."""

    TRUE = "true"
    OVERRIDABLE = "overridable"  # run: true, then a spread that may override it
    DYNAMIC = "dynamic"  # run: <expression>: decided in code, not flagged
    FALSE = "false"
    MISSING = "missing"
    PARAM = "param"  # a parameter of unknown shape
    UNKNOWN = "unknown"  # an expression we cannot see into (import, member, foreign call)
    UNRESOLVED = "unresolved"  # a name not found in a file we only have the diff of
    NONE = "none"  # null/None/a literal that is not a message


_SETS_RUN = (Run.TRUE, Run.FALSE, Run.DYNAMIC, Run.OVERRIDABLE)
_OPAQUE = (Run.PARAM, Run.UNKNOWN, Run.UNRESOLVED)
# Worst first: how conditional branches that disagree are summed up.
_ORDER = (
    Run.MISSING,
    Run.FALSE,
    Run.PARAM,
    Run.UNRESOLVED,
    Run.UNKNOWN,
    Run.OVERRIDABLE,
    Run.DYNAMIC,
    Run.TRUE,
    Run.NONE,
)


@dataclass
class Shape:
    """The verdict on one expression plus the nodes of the reported file it rests on."""

    run: Run
    related: list[SgNode] = field(default_factory=list)
    unresolved: str | None = None


def _after_spread(current: Run, spread: Run) -> Run:
    if spread in _SETS_RUN:
        return spread
    if spread in (Run.MISSING, Run.NONE):
        return current
    if current in (Run.TRUE, Run.OVERRIDABLE):
        return Run.OVERRIDABLE
    return Run.DYNAMIC if current is Run.DYNAMIC else spread


def _branches(runs: list[Run]) -> Run:
    """``cond ? a : b``, ``a ?? b``: agreeing branches keep their verdict; a branch that sets
    run next to one that does not is a decision made in code."""
    runs = [run for run in runs if run is not Run.NONE]
    if not runs:
        return Run.NONE
    if all(run is runs[0] for run in runs):
        return runs[0]
    sets = any(run in (Run.TRUE, Run.DYNAMIC, Run.OVERRIDABLE) for run in runs)
    lacks = any(run in (Run.MISSING, Run.FALSE) for run in runs)
    if sets and lacks:
        return Run.DYNAMIC
    return min(runs, key=_ORDER.index)


def _literal_run(value: SgNode | None) -> Run:
    if value is None:
        return Run.DYNAMIC
    kind = unwrap(value).kind()
    if kind == "true":
        return Run.TRUE
    if kind == "false":
        return Run.FALSE
    return Run.DYNAMIC


_NOT_A_MESSAGE = frozenset(
    {
        "null",
        "undefined",
        "none",
        "string",
        "template_string",
        "concatenated_string",
        "number",
        "integer",
        "float",
        "array",
        "list",
        "true",
        "false",
    }
)
_SERIALIZERS = frozenset({"stringify", "dumps"})
_MODEL_DUMPS = frozenset({"model_dump", "model_dump_json", "dict", "to_dict", "json"})


class _Evaluator:
    """Reads what a message/options expression says about ``run``, following one hop."""

    def __init__(self, workspace: Workspace, origin: ParsedFile) -> None:
        self.workspace = workspace
        self.origin = origin

    def value(self, node: SgNode, parsed: ParsedFile, hops: int = 0, depth: int = 0) -> Shape:
        if depth > 8:
            return Shape(Run.UNKNOWN)
        node = unwrap(node)
        kind = node.kind()
        if kind in ("object", "dictionary"):
            return self._members(node, parsed, hops, depth)
        if kind in _NOT_A_MESSAGE:
            return Shape(Run.NONE)
        if kind in ("ternary_expression", "conditional_expression"):
            if kind == "ternary_expression":
                arms = [node.field("consequence"), node.field("alternative")]
            else:
                named = node.named_children()
                arms = [named[0], named[2]] if len(named) >= 3 else []
            return self._either([arm for arm in arms if arm is not None], parsed, hops, depth)
        if kind in ("binary_expression", "binary_operator", "boolean_operator"):
            operator = node.field("operator")
            text = operator.text() if operator is not None else ""
            left, right = node.field("left"), node.field("right")
            if left is None or right is None:
                return Shape(Run.UNKNOWN)
            if text in ("&&", "and"):
                return self._either([right], parsed, hops, depth)
            if text in ("||", "??", "or"):
                return self._either([left, right], parsed, hops, depth)
            if text == "|" and parsed.python:  # message | {"run": True}
                merged = self.value(left, parsed, hops, depth + 1)
                self._spread(merged, right, parsed, hops, depth)
                return merged
            return Shape(Run.UNKNOWN)
        if kind in ("identifier", "shorthand_property_identifier"):  # x, or { x }
            return self._name(node, parsed, hops, depth)
        if kind in CALL_KINDS:
            return self._call(node, parsed, hops, depth)
        return Shape(Run.UNKNOWN)

    def _relate(self, shape: Shape, node: SgNode, parsed: ParsedFile) -> None:
        if parsed is self.origin:
            shape.related.append(node)

    def _either(self, arms: list[SgNode], parsed: ParsedFile, hops: int, depth: int) -> Shape:
        shapes = [self.value(arm, parsed, hops, depth + 1) for arm in arms]
        merged = Shape(_branches([shape.run for shape in shapes]))
        for shape in shapes:
            merged.related.extend(shape.related)
            merged.unresolved = merged.unresolved or shape.unresolved
        return merged

    def _spread(
        self, shape: Shape, source: SgNode, parsed: ParsedFile, hops: int, depth: int
    ) -> None:
        inner = self.value(source, parsed, hops, depth + 1)
        shape.run = _after_spread(shape.run, inner.run)
        shape.related.extend(inner.related)
        shape.unresolved = shape.unresolved or inner.unresolved

    def _members(self, node: SgNode, parsed: ParsedFile, hops: int, depth: int) -> Shape:
        shape = Shape(Run.MISSING)
        self._relate(shape, node, parsed)
        for key, member in object_entries(node):
            if member.kind() in ("spread_element", "dictionary_splat"):
                named = member.named_children()
                if named:
                    self._spread(shape, named[0], parsed, hops, depth)
            elif key == "run":
                shape.run = (
                    _literal_run(member.field("value")) if member.kind() == "pair" else Run.DYNAMIC
                )
        return shape

    def _keywords(self, call: SgNode, parsed: ParsedFile, hops: int, depth: int) -> Shape:
        """``dict(base, run=True)`` / ``SendMessageRequest(role=…, run=True)``."""
        shape = Shape(Run.MISSING)
        self._relate(shape, call, parsed)
        if callee_name(call) == "dict":
            for arg in positional_args(call)[:1]:
                self._spread(shape, arg, parsed, hops, depth)
        arguments = call.field("arguments")
        for arg in arguments.named_children() if arguments is not None else []:
            if arg.kind() == "keyword_argument":
                name = arg.field("name")
                if name is not None and name.text() == "run":
                    shape.run = _literal_run(arg.field("value"))
            elif arg.kind() == "dictionary_splat":
                named = arg.named_children()
                if named:
                    self._spread(shape, named[0], parsed, hops, depth)
        return shape

    def _call(self, call: SgNode, parsed: ParsedFile, hops: int, depth: int) -> Shape:
        name = callee_name(call) or ""
        args = positional_args(call)
        receiver = callee_receiver(call)
        if name in _SERIALIZERS and args:
            return self.value(args[0], parsed, hops, depth + 1)
        if name in _MODEL_DUMPS and receiver is not None and parsed.python:
            return self.value(receiver, parsed, hops, depth + 1)
        if name == "assign" and receiver is not None and receiver.text() == "Object" and args:
            shape = self.value(args[0], parsed, hops, depth + 1)
            for source in args[1:]:
                self._spread(shape, source, parsed, hops, depth)
            return shape
        if hops < 1 and call.kind() != "new_expression":
            for definition_file, function in self.workspace.callee_definitions(call, parsed):
                values = returned_values(function)
                if values:
                    return self._either(values, definition_file, hops + 1, depth)
        if parsed.python and (name == "dict" or keyword_args(call) or _has_splat(call)):
            return self._keywords(call, parsed, hops, depth)
        return Shape(Run.UNKNOWN)

    def _name(self, node: SgNode, parsed: ParsedFile, hops: int, depth: int) -> Shape:
        if node.text() == "undefined":
            return Shape(Run.NONE)
        binding = resolve_name(node.text(), node, parsed)
        if binding.kind == "param":
            return Shape(Run.PARAM)
        if binding.kind == "none" or binding.node is None or binding.declaration is None:
            if parsed.partial:
                return Shape(Run.UNRESOLVED, unresolved=node.text())
            return Shape(Run.UNKNOWN)
        shape = self.value(binding.node, parsed, hops, depth + 1)
        self._relate(shape, binding.declaration, parsed)
        after = binding.declaration.range().end.index
        before = node.range().start.index
        for mutation, run in _mutations(node.text(), binding.scope, parsed, after, before):
            self._relate(shape, mutation, parsed)
            if isinstance(run, Run):
                shape.run = run
            else:
                self._spread(shape, run, parsed, hops, depth)
        return shape


def _has_splat(call: SgNode) -> bool:
    arguments = call.field("arguments")
    if arguments is None:
        return False
    return any(arg.kind() == "dictionary_splat" for arg in arguments.named_children())


def _is_run_target(target: SgNode, name: str) -> bool:
    """``name.run`` or ``name["run"]`` (TS and Python)."""
    kind = target.kind()
    if kind in ("member_expression", "attribute"):
        obj = target.field("object")
        prop = target.field("property") or target.field("attribute")
        return obj is not None and obj.text() == name and prop is not None and prop.text() == "run"
    if kind in ("subscript_expression", "subscript"):
        obj = target.field("object") or target.field("value")
        index = target.field("index") or target.field("subscript")
        return (
            obj is not None
            and obj.text() == name
            and index is not None
            and string_value(index) == "run"
        )
    return False


def _mutations(
    name: str, scope: SgNode | None, parsed: ParsedFile, after: int, before: int
) -> list[tuple[SgNode, Run | SgNode]]:
    """Changes to ``name`` between its declaration and its use: ``name.run = …`` sets run,
    ``Object.assign(name, x)`` / ``name.update(x)`` merge ``x`` in."""
    found: list[tuple[SgNode, Run | SgNode]] = []
    assignment = "assignment" if parsed.python else "assignment_expression"
    for node in nodes_between(scope, parsed, assignment, after, before):
        left = node.field("left")
        if left is not None and _is_run_target(left, name):
            found.append((node, _literal_run(node.field("right"))))
    call_kind = "call" if parsed.python else "call_expression"
    for call in nodes_between(scope, parsed, call_kind, after, before):
        method, receiver, args = callee_name(call), callee_receiver(call), positional_args(call)
        if receiver is None:
            continue
        if method == "assign" and receiver.text() == "Object" and len(args) > 1:
            if args[0].text() == name:
                found.extend((call, source) for source in args[1:])
        elif method == "update" and receiver.text() == name and parsed.python:
            found.extend((call, arg) for arg in args[:1])
            run = keyword_args(call).get("run")
            if run is not None:
                found.append((call, _literal_run(run)))
    found.sort(key=lambda item: item[0].range().start.index)
    return found


def _run_true_nodes(root: SgNode, language: str) -> list[SgNode]:
    """Every ``run: true`` pair, ``"run": True`` entry and ``run=True`` keyword under root."""
    found = [
        pair
        for pair in root.find_all(kind="pair")
        if key_name(pair.field("key")) == "run" and _literal_run(pair.field("value")) is Run.TRUE
    ]
    for keyword in find_kinds(root, language, "keyword_argument"):
        name = keyword.field("name")
        value_is_true = _literal_run(keyword.field("value")) is Run.TRUE
        if name is not None and name.text() == "run" and value_is_true:
            found.append(keyword)
    return found


def _provides_run(function: SgNode, language: str) -> bool:
    """Whether a wrapper's body adds ``run: true`` anywhere (pair, keyword or assignment)."""
    if _run_true_nodes(function, language):
        return True
    for node in find_kinds(function, language, "assignment_expression", "assignment"):
        left = node.field("left")
        if left is None or _literal_run(node.field("right")) is not Run.TRUE:
            continue
        obj = left.field("object") or left.field("value")
        if obj is not None and _is_run_target(left, obj.text()):
            return True
    return False


def _posts(function: SgNode, language: str) -> bool:
    """Whether a wrapper's body makes a POST (a ``"POST"`` literal or a ``.post(`` call)."""
    for node in function.find_all(kind="string"):
        value = string_value(node)
        if value is not None and value.upper() == "POST":
            return True
    calls = find_kinds(function, language, "call_expression", "call")
    return any(callee_name(call) == "post" for call in calls)


# ---- sites --------------------------------------------------------------------------------


@dataclass
class _Site:
    node: SgNode
    severity: Severity
    message: str
    shape: Shape


_REST_MISSING = (
    "POST …/conversations/{id}/events without `run: true` stores the message but never "
    "starts the agent (`run` defaults to false); "
)
_OVERRIDABLE = (
    "`run: true` comes before a spread that can override it; put it last "
    "(`{ ...rest, run: true }`)."
)


def _send_event(call: SgNode, parsed: ParsedFile, evaluator: _Evaluator) -> _Site | None:
    args = positional_args(call)
    # sendEvent(conversationId, event[, options]); analytics' sendEvent("click", …) names
    # its event with a literal where the client takes a conversation id.
    if len(args) < 2 or string_value(args[0]) is not None:
        return None
    definitions = evaluator.workspace.callee_definitions(call, parsed)
    if any(_provides_run(function, where.language) for where, function in definitions):
        return None  # a wrapper of sendEvent that adds run: true itself
    related: list[SgNode] = []
    if len(args) > 2 and unwrap(args[2]).kind() != "undefined":
        options = evaluator.value(args[2], parsed)
        if options.run in (Run.TRUE, Run.DYNAMIC) or options.run in _OPAQUE:
            return None  # options decided in code or handed in by the caller
        if options.run is Run.OVERRIDABLE:
            return _Site(call, Severity.SUGGESTION, _OVERRIDABLE, options)
        if options.run is Run.FALSE:
            message = _REST_MISSING + "pass `{ run: true }` instead of `{ run: false }`."
            return _Site(call, Severity.CRITICAL, message, options)
        related = options.related  # `{}`: the client adds no run, the message decides
    message_shape = evaluator.value(args[1], parsed)
    message_shape.related.extend(related)
    return _judge_rest(call, message_shape, "pass `{ run: true }` as `sendEvent`'s options.")


def _judge_rest(node: SgNode, shape: Shape, advice: str) -> _Site | None:
    if shape.run in (Run.TRUE, Run.DYNAMIC, Run.NONE):
        return None
    if shape.run is Run.OVERRIDABLE:
        return _Site(node, Severity.SUGGESTION, _OVERRIDABLE, shape)
    if shape.run is Run.FALSE:
        advice = "`run: false` keeps the agent idle; " + advice
    return _Site(node, Severity.CRITICAL, _REST_MISSING + advice, shape)


def _raw_send(call: SgNode, parsed: ParsedFile, evaluator: _Evaluator) -> _Site | None:
    request = http_call(call, parsed)
    if request is None or conversation_action(request.shape) != "events":
        return None
    definitions = evaluator.workspace.callee_definitions(call, parsed)
    if any(_provides_run(function, where.language) for where, function in definitions):
        return None
    method = request.method
    if method is None and any(_posts(function, where.language) for where, function in definitions):
        method = "POST"
    if method != "POST":
        return None
    if request.body is None:
        return _Site(
            call,
            Severity.CRITICAL,
            _REST_MISSING + "send `run: true` in the body.",
            Shape(Run.MISSING),
        )
    shape = evaluator.value(request.body, parsed)
    return _judge_rest(call, shape, "add `run: true` to the body.")


def _sdk_send(call: SgNode, parsed: ParsedFile) -> _Site | None:
    """SDK ``send_message()`` posts ``run: false``: the caller must run the conversation."""
    receiver = callee_receiver(call)
    if receiver is None:
        return None
    scope = enclosing_function(call) or parsed.root
    done = call.range().end.index
    for attribute in scope.find_all(kind="attribute"):
        obj, attr = attribute.field("object"), attribute.field("attribute")
        if obj is None or attr is None or obj.text() != receiver.text():
            continue
        if attr.text() not in ("run", "arun"):
            continue
        parent = attribute.parent()
        called = (
            parent is not None and parent.kind() == "call" and parent.field("function") == attribute
        )
        # A call must come after the send; a reference (thread target, executor) anywhere.
        if not called or attribute.range().start.index >= done:
            return None
    message = (
        "`send_message()` only stores the message (the SDK posts `run: false`) and the agent "
        f"never starts; call `{receiver.text()}.run()` (or `await {receiver.text()}.arun()`) "
        "after it in the same function."
    )
    return _Site(call, Severity.CRITICAL, message, Shape(Run.MISSING))


# ---- WebSocket sends ----------------------------------------------------------------------

_SOCKET_SENDS = frozenset({"send", "send_text", "send_str"})
_SOCKET_JSON_SENDS = frozenset({"sendJsonMessage", "send_json"})
_SOCKET_FACTORIES = frozenset(
    {"connect", "ws_connect", "websocket_connect", "create_connection", "useWebSocket"}
)


def _serialized(node: SgNode, parsed: ParsedFile) -> SgNode | None:
    """X of ``JSON.stringify(X)`` / ``json.dumps(X)``, directly or through one variable."""
    node = unwrap(node)
    if node.kind() == "identifier":
        binding = resolve_name(node.text(), node, parsed)
        if binding.kind != "value" or binding.node is None:
            return None
        node = unwrap(binding.node)
    if node.kind() in CALL_KINDS and callee_name(node) in _SERIALIZERS:
        args = positional_args(node)
        return args[0] if args else None
    return None


def _socket_creations(parsed: ParsedFile) -> list[tuple[str | None, SgNode]]:
    """(the name a socket is bound to, its URL argument) for each socket the file opens."""
    found: list[tuple[str | None, SgNode]] = []
    for node in find_kinds(
        parsed.root, parsed.language, "new_expression", "call_expression", "call"
    ):
        name = callee_name(node) or ""
        is_socket = node.kind() == "new_expression" and "socket" in name.lower()
        if not is_socket and name not in _SOCKET_FACTORIES:
            continue
        args = positional_args(node)
        url = args[0] if args else keyword_args(node).get("uri")
        if url is not None:
            found.append((_bound_name(node), url))
    return found


def _bound_name(node: SgNode) -> str | None:
    for ancestor in node.ancestors():
        kind = ancestor.kind()
        if kind in ("await_expression", "await", "parenthesized_expression", "as_expression"):
            continue
        if kind in ("variable_declarator", "public_field_definition", "field_definition"):
            name = ancestor.field("name") or ancestor.field("property")
            if name is None:
                return None
            return name.text() if kind == "variable_declarator" else f"this.{name.text()}"
        if kind in ("assignment_expression", "assignment"):
            left = ancestor.field("left")
            return left.text() if left is not None else None
        if kind == "as_pattern":
            alias = ancestor.field("alias")
            return alias.text() if alias is not None else None
        return None
    return None


def _events_socket(call: SgNode, message: SgNode, parsed: ParsedFile) -> bool:
    """Whether a send goes to ``/sockets/events/…`` (not a bash or other socket)."""
    receiver = callee_receiver(call)
    creations = _socket_creations(parsed)
    receiver_text = receiver.text() if receiver is not None else None
    kinds: set[str | None] = set()
    for bound, url in creations:
        if receiver_text is None or bound == receiver_text:
            shape = url_shape(url, parsed)
            kinds.add(socket_kind(shape) if shape is not None else None)
    if kinds and None not in kinds:
        return kinds == {"events"}
    # Unknown binding: decide from the socket URLs the file mentions.
    mentioned = set()
    for node in parsed.root.find_all(kind="string"):
        shape = url_shape(node)
        if shape is not None and socket_kind(shape) is not None:
            mentioned.add(socket_kind(shape))
    if not parsed.python:
        for node in parsed.root.find_all(kind="template_string"):
            shape = url_shape(node)
            if shape is not None and socket_kind(shape) is not None:
                mentioned.add(socket_kind(shape))
    if mentioned:
        return mentioned == {"events"}
    # No socket URL in sight: only a payload shaped like a message counts.
    literal = unwrap(message)
    if literal.kind() == "identifier":
        binding = resolve_name(literal.text(), literal, parsed)
        literal = unwrap(binding.node) if binding.node is not None else literal
    if literal.kind() not in ("object", "dictionary"):
        return False
    keys = {key for key, _ in object_entries(literal)}
    return "role" in keys or "content" in keys


def _socket_send(call: SgNode, parsed: ParsedFile, evaluator: _Evaluator) -> _Site | None:
    name = callee_name(call)
    args = positional_args(call)
    if len(args) != 1:
        return None
    message = args[0] if name in _SOCKET_JSON_SENDS else _serialized(args[0], parsed)
    if message is None or not _events_socket(call, message, parsed):
        return None
    shape = evaluator.value(message, parsed)
    if shape.run not in (Run.MISSING, Run.FALSE, Run.PARAM, Run.OVERRIDABLE, Run.UNRESOLVED):
        return None
    advice = (
        "WebSocket message without `run: true`: the server starts the agent regardless, but "
        "`run: true` is the convention since async conversations; add it to the message."
    )
    if shape.run is Run.OVERRIDABLE:
        advice = _OVERRIDABLE
    return _Site(call, Severity.SUGGESTION, advice, shape)


# ---- initial_message ----------------------------------------------------------------------


def _initial_messages(parsed: ParsedFile) -> Iterator[tuple[SgNode, SgNode]]:
    """(the key/argument node, its value) for every ``initial_message`` the file sets."""
    root = parsed.root
    if "initial_message" not in parsed.text:
        return
    for pair in root.find_all(kind="pair"):
        value = pair.field("value")
        if key_name(pair.field("key")) == "initial_message" and value is not None:
            yield pair, value
    if parsed.python:
        for keyword in root.find_all(kind="keyword_argument"):
            name, value = keyword.field("name"), keyword.field("value")
            if name is not None and name.text() == "initial_message" and value is not None:
                yield keyword, value
    else:
        for short in root.find_all(kind="shorthand_property_identifier", regex="^initial_message$"):
            yield short, short
    assignment = "assignment" if parsed.python else "assignment_expression"
    for node in root.find_all(kind=assignment):
        left, right = node.field("left"), node.field("right")
        if left is None or right is None:
            continue
        prop = left.field("property") or left.field("attribute") or left.field("index")
        prop = prop or left.field("subscript")
        if prop is not None and (
            prop.text() == "initial_message" or string_value(prop) == "initial_message"
        ):
            yield node, right


def _names_app_server(call: SgNode) -> bool:
    words = name_words(callee_name(call) or "")
    return "cloud" in words or ("app" in words and "conversation" in words)


def _call_goes_to_app_server(call: SgNode, parsed: ParsedFile) -> bool:
    if _names_app_server(call):
        return True
    request = http_call(call, parsed)
    return request is not None and is_app_server_url(request.shape)


_LOOK_THROUGH = frozenset({"parenthesized_expression", "as_expression", "satisfies_expression"})


def _app_server_payload(node: SgNode, parsed: ParsedFile) -> bool:
    """Whether an ``initial_message`` belongs to a cloud app-server start request.

    The payload is handed to a call whose URL is ``/api/v1/app-conversations`` (or whose
    name says cloud/app conversation), directly or through a variable typed or passed so.
    """
    container: SgNode | None = None
    for ancestor in node.ancestors():
        kind = ancestor.kind()
        if kind in CALL_KINDS:
            if callee_name(ancestor) in _SERIALIZERS:
                continue
            if _call_goes_to_app_server(ancestor, parsed):
                return True
            break
        if kind in ("object", "dictionary"):
            container = ancestor
        elif kind not in ("pair", "arguments", "argument_list", *_LOOK_THROUGH):
            break
    if container is None:
        return False
    declaration = container.parent()
    while declaration is not None and declaration.kind() in _LOOK_THROUGH:
        declaration = declaration.parent()
    if declaration is None:
        return False
    if declaration.kind() not in ("variable_declarator", "assignment", "assignment_expression"):
        return False
    annotation = declaration.field("type")
    if annotation is not None and "AppConversation" in annotation.text():
        return True
    target = declaration.field("name") or declaration.field("left")
    if target is None:
        return False
    scope = enclosing_function(declaration) or parsed.root
    call_kind = "call" if parsed.python else "call_expression"
    for call in scope.find_all(kind=call_kind):
        passed = any(unwrap(arg).text() == target.text() for arg in positional_args(call))
        if passed and _call_goes_to_app_server(call, parsed):
            return True
    return False


def _initial_message(
    node: SgNode, value: SgNode, parsed: ParsedFile, evaluator: _Evaluator
) -> _Site | None:
    if in_cloud_branch(node) or _app_server_payload(node, parsed):
        return None
    shape = evaluator.value(value, parsed)
    if shape.run not in (Run.MISSING, Run.FALSE, Run.PARAM, Run.OVERRIDABLE, Run.UNRESOLVED):
        return None
    advice = (
        "`initial_message` without `run: true`: the server runs it anyway, but `run: true` "
        "is the convention since async conversations; add it to the message."
    )
    if shape.run is Run.OVERRIDABLE:
        advice = _OVERRIDABLE
    return _Site(node, Severity.SUGGESTION, advice, shape)


# ---- removed `run: true` ------------------------------------------------------------------


def _fragment_run_true_nodes(line: str, language: str) -> bool:
    """Parse one removed line on its own: as is, as object/dict members, as arguments."""
    text = line.strip()
    wrappers = ("{}", "({{{}}})", "f({})") if language != "python" else ("{}", "{{{}}}", "f({})")
    return any(
        _run_true_nodes(SgRoot(wrap.format(text), language).root(), language) for wrap in wrappers
    )


def removed_run_true(parsed: ParsedFile) -> list[int]:
    """Head positions of removed lines that set ``run: true`` / ``"run": True`` / ``run=True``."""
    removed = {number: text for number, text in parsed.changed.removed.items() if "run" in text}
    if not removed:
        return []
    positions = removal_positions(parsed.changed)
    base = parsed.changed.base_text
    if base is not None and len(base.encode("utf-8", errors="replace")) <= MAX_PARSE_BYTES:
        lines = {
            line
            for node in _run_true_nodes(SgRoot(base, parsed.language).root(), parsed.language)
            for line in range(start_line(node), end_line(node) + 1)
        }
        hits = [number for number in removed if number in lines]
    else:
        hits = [n for n, text in removed.items() if _fragment_run_true_nodes(text, parsed.language)]
    return sorted(positions[number] for number in hits if number in positions)


# ---- the check ----------------------------------------------------------------------------


def _sites(parsed: ParsedFile, workspace: Workspace) -> Iterator[_Site]:
    evaluator = _Evaluator(workspace, parsed)
    sdk = imports_sdk(parsed)
    call_kind = "call" if parsed.python else "call_expression"
    for call in parsed.root.find_all(kind=call_kind):
        name = callee_name(call)
        site: _Site | None
        if name == "sendEvent" and not parsed.python:
            site = _send_event(call, parsed, evaluator)
        elif name == "send_message" and parsed.python:
            site = _sdk_send(call, parsed) if sdk else None
        elif name in _SOCKET_SENDS or name in _SOCKET_JSON_SENDS:
            site = _socket_send(call, parsed, evaluator)
        else:
            site = _raw_send(call, parsed, evaluator)
        if site is not None:
            yield site
    for node, value in _initial_messages(parsed):
        site = _initial_message(node, value, parsed, evaluator)
        if site is not None:
            yield site


def _report_line(site: _Site, parsed: ParsedFile, removed: list[int]) -> tuple[int, bool] | None:
    """The line to report a site on, and whether the change touched it by removing run.

    The site's own first added line; else a removed ``run: true`` inside it (reported on the
    nearest added line of the call, or the call); else the first added line of the message
    it sends (same file), or the call when ``run: true`` was removed from that message.
    """
    first, last = start_line(site.node), end_line(site.node)
    added = parsed.added_in(first, last)
    inside = [position for position in removed if first < position <= last]
    if inside:
        if added:
            return min(added, key=lambda line: abs(line - inside[0])), True
        return first, True
    if added:
        return added[0], False
    for node in site.shape.related:
        if contains(site.node, node):
            continue
        node_first, node_last = start_line(node), end_line(node)
        touched = parsed.added_in(node_first, node_last)
        if touched:
            return touched[0], False
        if any(node_first < position <= node_last for position in removed):
            return first, True
    return None


_REMOVED = "This change removes `run: true` from a send to …/events: "


def run(ctx: CheckContext) -> CheckResult:
    workspace = Workspace.for_changeset(ctx.changeset)
    findings: list[Finding] = []
    incomplete: list[str] = []
    # Every changed file, not only those with added lines: a change that only deletes
    # `run: true` still breaks the send it leaves behind.
    for changed in ctx.files(skip_tests=True):
        if changed.path in workspace.too_large:
            if workspace.unparsed_may_matter(changed.path):
                size = workspace.too_large[changed.path]
                incomplete.append(f"{changed.path}: too large to parse ({size} bytes)")
            continue
        parsed = workspace.get(changed.path)
        if parsed is None or not workspace.has_signal:
            continue
        removed = removed_run_true(parsed)
        for site in _sites(parsed, workspace):
            placed = _report_line(site, parsed, removed)
            if placed is None:
                continue
            line, via_removal = placed
            if site.shape.run is Run.UNRESOLVED:
                incomplete.append(
                    f"{parsed.path}: only the diff is available; could not see `"
                    f"{site.shape.unresolved}` sent at line {start_line(site.node)}"
                )
                continue
            message = (_REMOVED + site.message) if via_removal else site.message
            findings.append(
                Finding(
                    rule=RULE,
                    severity=site.severity,
                    path=parsed.path,
                    line=line,
                    message=message,
                    code=code_excerpt(site.node),
                )
            )
    return CheckResult(findings=tuple(findings), incomplete=tuple(incomplete))


CHECK = Check(
    rule=RULE,
    title="Conversation message sent without run: true",
    run=run,
    severities={RULE: Severity.CRITICAL},
)
