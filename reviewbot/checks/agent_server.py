"""Shared ground of the agent-server conversation rules: parsing, scope, URLs and lookups.

Both conversation rules need the same things: the changed source files parsed once with
ast-grep, whether the change talks to an OpenHands agent-server at all (other products use
similar ``/api/conversations/:id/...`` paths, so nothing is reported without such a signal),
what a URL expression points at, what an HTTP call sends, one-hop lookups of variables and
functions in the same file or the other changed files, whether a piece of code only runs on
a cloud backend, and which lines of a node the change added or removed.

Structure always comes from the syntax tree. Regular expressions only look at the content of
one string literal (a URL) or one identifier (its words).
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import PurePosixPath

from ast_grep_py import SgNode, SgRoot

from reviewbot.checks.base import MAX_PARSE_BYTES
from reviewbot.diff import partial_text
from reviewbot.models import ChangedFile, ChangeSet, FileStatus

# ---- languages ----------------------------------------------------------------------------

LANGUAGE_BY_SUFFIX: dict[str, str] = {
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".py": "python",
}
SOURCE_SUFFIXES: tuple[str, ...] = tuple(LANGUAGE_BY_SUFFIX)


def language_for(path: str) -> str | None:
    """The ast-grep language of ``path`` from its suffix, or None if neither TS/JS nor Python."""
    return LANGUAGE_BY_SUFFIX.get(PurePosixPath(path).suffix.lower())


# ---- small node helpers -------------------------------------------------------------------


@cache
def has_kind(language: str, kind: str) -> bool:
    """Whether ``kind`` is a node kind of ``language`` (ast-grep refuses unknown kinds)."""
    try:
        SgRoot("", language).root().find(kind=kind)
    except RuntimeError:
        return False
    return True


def find_kinds(node: SgNode, language: str, *kinds: str) -> list[SgNode]:
    """Every node of any of ``kinds`` under ``node``, in source order; unknown kinds skipped."""
    found = [
        match for kind in kinds if has_kind(language, kind) for match in node.find_all(kind=kind)
    ]
    if len(kinds) > 1:
        found.sort(key=lambda match: match.range().start.index)
    return found


FUNCTION_KINDS = frozenset(
    {
        "function_declaration",
        "function_expression",
        "arrow_function",
        "method_definition",
        "generator_function_declaration",
        "generator_function",
        "function_definition",
        "lambda",
    }
)
CALL_KINDS = frozenset({"call_expression", "call", "new_expression"})
_TRANSPARENT = frozenset(
    {
        "parenthesized_expression",
        "await_expression",
        "await",
        "as_expression",
        "satisfies_expression",
        "non_null_expression",
        "type_assertion",
    }
)
# A string hole: whatever a template substitution or a non-literal operand contributes.
HOLE = "{}"


def start_line(node: SgNode) -> int:
    return node.range().start.line + 1


def end_line(node: SgNode) -> int:
    return node.range().end.line + 1


def contains(outer: SgNode, inner: SgNode) -> bool:
    a, b = outer.range(), inner.range()
    return a.start.index <= b.start.index and b.end.index <= a.end.index


def unwrap(node: SgNode) -> SgNode:
    """Look through parentheses, ``await``, ``as T``, ``x!`` and ``<T>x``."""
    while node.kind() in _TRANSPARENT:
        named = [child for child in node.named_children() if child.kind() != "comment"]
        if not named:
            break
        node = named[-1] if node.kind() == "type_assertion" else named[0]
    return node


def code_excerpt(node: SgNode, limit: int = 400) -> str:
    text = node.text()
    return text if len(text) <= limit else text[:limit]


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> list[str]:
    """``handleStopClick`` → ["handle", "stop", "click"]; ``is_cloud`` → ["is", "cloud"]."""
    return [word.lower() for word in _WORD.findall(name)]


def string_value(node: SgNode) -> str | None:
    """The content of a string literal without interpolation, else None."""
    node = unwrap(node)
    kind = node.kind()
    if kind not in ("string", "template_string"):
        return None
    parts: list[str] = []
    for child in node.children():
        part = child.kind()
        if part in ("string_fragment", "string_content", "escape_sequence"):
            parts.append(child.text())
        elif part in ("interpolation", "template_substitution"):
            return None
    return "".join(parts)


def key_name(key: SgNode | None) -> str | None:
    """The name of an object/dict key: ``run``, ``"run"`` or ``'run'``; None if computed."""
    if key is None:
        return None
    if key.kind() in ("property_identifier", "identifier", "number", "private_property_identifier"):
        return key.text()
    return string_value(key)


def object_entries(node: SgNode) -> Iterator[tuple[str | None, SgNode]]:
    """(key, member) for each member of a TS object or Python dict, in source order.

    Spreads (``...x`` / ``**x``) come with key None; shorthand ``{ run }`` with its name.
    """
    for member in node.named_children():
        kind = member.kind()
        if kind == "pair":
            yield key_name(member.field("key")), member
        elif kind == "shorthand_property_identifier":
            yield member.text(), member
        elif kind in ("spread_element", "dictionary_splat"):
            yield None, member


def object_get(node: SgNode, key: str) -> SgNode | None:
    """The value of the last ``key`` pair of an object/dict literal."""
    found: SgNode | None = None
    if node.kind() not in ("object", "dictionary"):
        return None
    for name, member in object_entries(node):
        if name == key and member.kind() == "pair":
            found = member.field("value")
    return found


# ---- calls --------------------------------------------------------------------------------


def callee(call: SgNode) -> SgNode | None:
    if call.kind() == "new_expression":
        return call.field("constructor")
    return call.field("function")


def callee_name(call: SgNode) -> str | None:
    """The called name: ``f`` for ``f()``, ``post`` for ``a.b.post()``."""
    target = callee(call)
    if target is None:
        return None
    target = unwrap(target)
    kind = target.kind()
    if kind == "identifier":
        return target.text()
    if kind == "member_expression":
        prop = target.field("property")
        return prop.text() if prop is not None else None
    if kind == "attribute":
        attr = target.field("attribute")
        return attr.text() if attr is not None else None
    return None


def callee_receiver(call: SgNode) -> SgNode | None:
    """``a.b`` for ``a.b.post()``; None for a plain function call."""
    target = callee(call)
    if target is None:
        return None
    target = unwrap(target)
    if target.kind() == "member_expression":
        return target.field("object")
    if target.kind() == "attribute":
        return target.field("object")
    return None


def _argument_nodes(call: SgNode) -> list[SgNode]:
    args = call.field("arguments")
    if args is None:
        return []
    return [child for child in args.named_children() if child.kind() != "comment"]


def positional_args(call: SgNode) -> list[SgNode]:
    return [
        arg
        for arg in _argument_nodes(call)
        if arg.kind() not in ("keyword_argument", "dictionary_splat", "list_splat")
    ]


def keyword_args(call: SgNode) -> dict[str, SgNode]:
    """Python ``name=value`` arguments of a call."""
    found: dict[str, SgNode] = {}
    for arg in _argument_nodes(call):
        if arg.kind() == "keyword_argument":
            name, value = arg.field("name"), arg.field("value")
            if name is not None and value is not None:
                found[name.text()] = value
    return found


# ---- parsed files and the change set ------------------------------------------------------


def _head_text(changed: ChangedFile) -> tuple[str, bool]:
    """The whole head file, or the diff's visible lines when that is all we have."""
    if changed.head_text is not None and not changed.head_is_partial:
        return changed.head_text, False
    return partial_text(changed), True


def removal_positions(changed: ChangedFile) -> dict[int, int]:
    """Map each removed (old) line to the head line it sat just before.

    Unchanged lines pair up in order between base and head, so walking both numberings at
    once places every removed line between two head lines.
    """
    if not changed.removed:
        return {}
    positions: dict[int, int] = {}
    old, new, last = 1, 1, max(changed.removed)
    while old <= last:
        if old in changed.removed:
            positions[old] = new
            old += 1
        elif new in changed.added:
            new += 1
        else:
            old += 1
            new += 1
    return positions


@dataclass(eq=False)
class ParsedFile:
    """One changed source file at head, parsed, with what the change did to its lines."""

    changed: ChangedFile
    text: str
    partial: bool
    language: str
    sg: SgRoot

    @property
    def root(self) -> SgNode:
        return self.sg.root()

    @property
    def path(self) -> str:
        return self.changed.path

    @property
    def python(self) -> bool:
        return self.language == "python"

    @cached_property
    def added(self) -> tuple[int, ...]:
        return tuple(sorted(self.changed.added))

    def added_in(self, first: int, last: int) -> list[int]:
        """Added line numbers between ``first`` and ``last`` (inclusive), ascending."""
        return list(self.added[bisect_left(self.added, first) : bisect_right(self.added, last)])

    @cached_property
    def functions(self) -> dict[str, list[SgNode]]:
        return _function_definitions(self)

    @cached_property
    def _declarations(self) -> dict[str, list[tuple[SgNode, SgNode]]]:
        return _all_declarations(self)

    def declarations(self, name: str) -> list[tuple[SgNode, SgNode]]:
        """(declaration, value) of every ``name = …`` in the file, in source order."""
        return self._declarations.get(name, [])

    @cached_property
    def _references(self) -> dict[str, list[SgNode]]:
        found: dict[str, list[SgNode]] = {}
        for node in find_kinds(self.root, self.language, "identifier", "property_identifier"):
            found.setdefault(node.text(), []).append(node)
        return found

    def references(self, name: str) -> list[SgNode]:
        """Every identifier (and TS property name) spelled ``name``, in source order."""
        return self._references.get(name, [])


def parse_changed(changed: ChangedFile) -> ParsedFile | int | None:
    """Parse a changed source file; its size in bytes if too large; None if not source."""
    language = language_for(changed.path)
    if language is None or changed.status is FileStatus.DELETED or changed.is_binary:
        return None
    text, partial = _head_text(changed)
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_PARSE_BYTES:
        return size
    return ParsedFile(changed, text, partial, language, SgRoot(text, language))


# Text a file must contain for either rule to find anything in it, or for it to matter to
# a one-hop lookup: a send (`send…`, `…/events`, `initial_message`, a socket), a pause or
# interrupt, a `run`, or an agent-server signal. Not a parser: a necessary condition that
# spares parsing the bulk of a large change set.
_MATTERS = (
    "onversation",
    "vent",
    "initial_message",
    "ocket",
    "send",
    "Send",
    "ause",
    "nterrupt",
    "run",
    "openhands",
)


def may_matter(text: str) -> bool:
    return any(needle in text for needle in _MATTERS)


class Workspace:
    """The changed source files that may matter to these rules, parsed once.

    Built once per change set and shared by both rules (``for_changeset``).
    """

    def __init__(self, changeset: ChangeSet) -> None:
        self.files: list[ParsedFile] = []
        self.too_large: dict[str, int] = {}
        self._texts: dict[str, str] = {}
        self._by_path: dict[str, ParsedFile] = {}
        # Source files that cannot hold a finding but may define a function a finding's
        # one-hop lookup needs (a neutral `request()` wrapper): parsed only when asked for.
        self._dormant: dict[str, tuple[ChangedFile, str]] = {}
        self._woken: set[str] = set()
        for changed in changeset.files:
            if language_for(changed.path) is None:
                continue
            text = _head_text(changed)[0]
            if not may_matter(text):
                self._dormant[changed.path] = (changed, text)
                continue
            parsed = parse_changed(changed)
            if isinstance(parsed, ParsedFile):
                self.files.append(parsed)
                self._by_path[parsed.path] = parsed
            elif isinstance(parsed, int):
                self.too_large[changed.path] = parsed
                self._texts[changed.path] = _head_text(changed)[0]

    @classmethod
    def for_changeset(cls, changeset: ChangeSet) -> Workspace:
        """The workspace of ``changeset``, parsed on first use and shared by both rules."""
        cached = _WORKSPACES.get(id(changeset))
        if cached is not None and cached[0]() is changeset:
            return cached[1]
        workspace = cls(changeset)
        _WORKSPACES.clear()  # one change set is reviewed at a time per process and thread
        _WORKSPACES[id(changeset)] = (weakref.ref(changeset), workspace)
        return workspace

    def get(self, path: str) -> ParsedFile | None:
        return self._by_path.get(path)

    @cached_property
    def has_signal(self) -> bool:
        return any(has_signal(parsed) for parsed in self.files)

    def unparsed_may_matter(self, path: str) -> bool:
        """Whether a file too large to parse mentions anything these rules look for."""
        return may_signal(self._texts.get(path, "")) or "pause" in self._texts.get(path, "")

    def functions_named(self, name: str, near: ParsedFile) -> list[tuple[ParsedFile, SgNode]]:
        """Definitions of ``name``: the same file first, then the other changed files."""
        self._wake(name)
        found = [(near, node) for node in near.functions.get(name, [])]
        for parsed in self.files:
            if parsed is not near:
                found.extend((parsed, node) for node in parsed.functions.get(name, []))
        return found

    def _wake(self, name: str) -> None:
        """Parse the dormant files that mention ``name``, so lookups see their functions."""
        if name in self._woken:
            return
        self._woken.add(name)
        for path, (changed, text) in list(self._dormant.items()):
            if name not in text:
                continue
            del self._dormant[path]
            parsed = parse_changed(changed)
            if isinstance(parsed, ParsedFile):
                self.files.append(parsed)
                self._by_path[path] = parsed

    def callee_definitions(self, call: SgNode, near: ParsedFile) -> list[tuple[ParsedFile, SgNode]]:
        """One hop: the functions a call may run, excluding the one the call sits in.

        ``f()`` runs a free function; ``obj.f()`` a method, or a free function of another
        file imported as a namespace (``api.f()``) — never a free function of the same file,
        which is how ``client.pauseConversation()`` stays the client's method next to a local
        ``function pauseConversation``.
        """
        name = callee_name(call)
        if not name:
            return []
        member = callee_receiver(call) is not None
        found: list[tuple[ParsedFile, SgNode]] = []
        for parsed, node in self.functions_named(name, near):
            if parsed is near and contains(node, call):
                continue
            method = is_method(node)
            if member and not method and parsed is near:
                continue
            if not member and method:
                continue
            found.append((parsed, node))
        return found


# ---- functions, scopes and bindings -------------------------------------------------------


def enclosing_function(node: SgNode) -> SgNode | None:
    for ancestor in node.ancestors():
        if ancestor.kind() in FUNCTION_KINDS:
            return ancestor
    return None


_HOLDERS = frozenset(
    {
        "variable_declarator",
        "public_field_definition",
        "field_definition",
        "pair",
        "assignment_expression",
    }
)


def binding_holder(fn: SgNode) -> SgNode | None:
    """The declarator/field/key a function expression is bound to, through ``useCallback(fn)``."""
    node = fn
    parent = node.parent()
    while parent is not None and parent.kind() == "parenthesized_expression":
        node, parent = parent, parent.parent()
    if parent is not None and parent.kind() == "arguments":
        call = parent.parent()
        if call is None or call.kind() != "call_expression":
            return None
        node, parent = call, call.parent()
    if parent is None or parent.kind() not in _HOLDERS:
        return None
    value = parent.field("value") or parent.field("right")
    return parent if value is not None and value == node else None


def holder_name(holder: SgNode) -> str | None:
    """The name a declarator, class field, object key or assignment target gives."""
    kind = holder.kind()
    if kind == "pair":
        return key_name(holder.field("key"))
    if kind == "assignment_expression" or kind == "assignment":
        left = holder.field("left")
        if left is None:
            return None
        if left.kind() in ("member_expression", "attribute"):
            prop = left.field("property") or left.field("attribute")
            return prop.text() if prop is not None else None
        return left.text() if left.kind() == "identifier" else None
    name = holder.field("name") or holder.field("property")
    if name is None or name.kind() not in (
        "identifier",
        "property_identifier",
        "private_property_identifier",
    ):
        return None
    return name.text()


def is_method(fn: SgNode) -> bool:
    """A class method, class-field function or object-literal function (called as ``x.f()``)."""
    if fn.kind() == "method_definition":
        return True
    if fn.kind() == "function_definition":
        block = fn.parent()
        if block is not None and block.kind() == "decorated_definition":
            block = block.parent()
        owner = block.parent() if block is not None else None
        return owner is not None and owner.kind() == "class_definition"
    holder = binding_holder(fn)
    return holder is not None and holder.kind() in (
        "public_field_definition",
        "field_definition",
        "pair",
    )


def function_name(fn: SgNode) -> str | None:
    """The name a function is known by: its own, or the variable/key/field it is bound to."""
    own = fn.field("name")
    if own is not None and fn.kind() != "lambda":
        return own.text()
    holder = binding_holder(fn)
    return holder_name(holder) if holder is not None else None


_NAMED_FUNCTION_KINDS = (
    "function_declaration",
    "generator_function_declaration",
    "method_definition",
)
_ANONYMOUS_FUNCTION_KINDS = ("arrow_function", "function_expression")


def _function_definitions(parsed: ParsedFile) -> dict[str, list[SgNode]]:
    found: dict[str, list[SgNode]] = {}
    root = parsed.root
    if parsed.python:
        kinds: tuple[str, ...] = ("function_definition",)
    else:
        kinds = _NAMED_FUNCTION_KINDS + _ANONYMOUS_FUNCTION_KINDS
    for fn in find_kinds(root, parsed.language, *kinds):
        if fn.kind() in _ANONYMOUS_FUNCTION_KINDS and fn.field("name") is None:
            holder = binding_holder(fn)
            name = holder_name(holder) if holder is not None else None
        else:
            name = function_name(fn)
        if name:
            found.setdefault(name, []).append(fn)
    return found


def parameters_of(fn: SgNode) -> dict[str, SgNode]:
    """Parameter name → parameter node (TS and Python, destructuring ignored)."""
    params = fn.field("parameters") or fn.field("parameter")
    found: dict[str, SgNode] = {}
    if params is None:
        return found
    if params.kind() == "identifier":  # x => …
        return {params.text(): params}
    for param in params.named_children():
        target = param.field("pattern") or param.field("name") or param.field("left")
        if target is None and param.kind() == "identifier":
            target = param
        if target is None:
            target = next(
                (child for child in param.named_children() if child.kind() == "identifier"), None
            )
        if target is not None and target.kind() == "identifier":
            found[target.text()] = param
    return found


def returned_values(fn: SgNode) -> list[SgNode]:
    """The expressions a function returns (not those of functions nested in it)."""
    body = fn.field("body")
    if body is None:
        return []
    if fn.kind() in ("arrow_function", "lambda") and body.kind() not in ("statement_block",):
        return [body]
    values: list[SgNode] = []
    for statement in body.find_all(kind="return_statement"):
        if enclosing_function(statement) != fn:
            continue
        named = [child for child in statement.named_children() if child.kind() != "comment"]
        if named:
            values.append(named[0])
    return values


def _all_declarations(parsed: ParsedFile) -> dict[str, list[tuple[SgNode, SgNode]]]:
    """Every ``name = value`` of a file by name, in source order, in one pass."""
    found: dict[str, list[tuple[SgNode, SgNode]]] = {}
    root = parsed.root
    if parsed.python:
        kinds = {"assignment": ("left", "right")}
    else:
        kinds = {
            "variable_declarator": ("name", "value"),
            "assignment_expression": ("left", "right"),
        }
    pairs: list[tuple[SgNode, SgNode, SgNode]] = []
    for kind, (name_field, value_field) in kinds.items():
        for node in root.find_all(kind=kind):
            left, value = node.field(name_field), node.field(value_field)
            if left is not None and value is not None and left.kind() == "identifier":
                pairs.append((node, left, value))
    if parsed.python:
        for node in root.find_all(kind="as_pattern"):  # with connect(url) as ws
            alias, named = node.field("alias"), node.named_children()
            if alias is not None and named:
                pairs.append((node, alias, named[0]))
    pairs.sort(key=lambda item: item[0].range().start.index)
    for node, left, value in pairs:
        found.setdefault(left.text(), []).append((node, value))
    return found


@dataclass(frozen=True)
class Binding:
    """What a name refers to at one place: a value, a parameter, or nothing we can see."""

    kind: str  # "value" | "param" | "none"
    node: SgNode | None = None  # the value expression, or the parameter
    declaration: SgNode | None = None
    scope: SgNode | None = None  # the function (or None: module) the name lives in


def resolve_name(name: str, at: SgNode, parsed: ParsedFile) -> Binding:
    """The latest ``name = …`` visible from ``at``, walking out through enclosing functions."""
    position = at.range().start.index
    scope: SgNode | None = enclosing_function(at)
    declarations = parsed.declarations(name)
    while True:
        best: tuple[SgNode, SgNode] | None = None
        for declaration, value in declarations:
            # `x = {...x}`: the right side sees the previous x, so a declaration counts only
            # once it has ended before the use.
            if declaration.range().end.index > position:
                continue
            if enclosing_function(declaration) != scope:
                continue
            best = (declaration, value)
        if best is not None:
            return Binding("value", best[1], best[0], scope)
        if scope is not None:
            params = parameters_of(scope)
            if name in params:
                return Binding("param", params[name], None, scope)
            scope = enclosing_function(scope)
            continue
        return Binding("none")


def nodes_between(
    scope: SgNode | None, parsed: ParsedFile, kind: str, after: int, before: int
) -> list[SgNode]:
    """Nodes of ``kind`` in ``scope`` (the file if None) starting between two offsets."""
    container = scope if scope is not None else parsed.root
    return [
        node for node in container.find_all(kind=kind) if after <= node.range().start.index < before
    ]


# ---- URLs and HTTP calls ------------------------------------------------------------------


# Bounds on how far URL and condition reading recurses: generated or minified code can nest
# thousands of operands, and a crash there must not cost the review.
_MAX_NESTING = 40
_MAX_NAME_HOPS = 3


def _plus_operands(node: SgNode) -> list[SgNode] | None:
    """The operands of ``a + b + c`` (left-nested), without recursing; None if not ``+``."""
    operands: list[SgNode] = []
    current = node
    while current.kind() in ("binary_expression", "binary_operator"):
        operator, left = current.field("operator"), current.field("left")
        right = current.field("right")
        if operator is None or operator.text() != "+" or left is None or right is None:
            break
        operands.append(right)
        current = unwrap(left)
    if not operands:
        return None
    operands.append(current)
    return operands[::-1]


def url_shape(node: SgNode, parsed: ParsedFile | None = None, depth: int = 0) -> str | None:
    """A string expression flattened to text with ``{}`` for every unknown part.

    ``${base}/api/conversations/${id}/events`` → ``{}/api/conversations/{}/events``. With a
    parsed file, an identifier is followed to its value (a const URL built a few lines up).
    Returns None when the expression is not built from strings at all.
    """
    if depth > _MAX_NESTING:
        return None
    node = unwrap(node)
    kind = node.kind()
    if kind in ("string", "template_string"):
        parts: list[str] = []
        for child in node.children():
            part = child.kind()
            if part in ("string_fragment", "string_content", "escape_sequence"):
                parts.append(child.text())
            elif part in ("interpolation", "template_substitution"):
                parts.append(HOLE)
        return "".join(parts)
    if kind == "concatenated_string":
        pieces = [url_shape(child, parsed, depth + 1) for child in node.named_children()]
        return "".join(piece or HOLE for piece in pieces)
    if kind in ("binary_expression", "binary_operator"):
        operator, left = node.field("operator"), node.field("left")
        if operator is not None and operator.text() == "%" and left is not None:
            return url_shape(left, parsed, depth + 1)  # "…/conversations/%s/events" % cid
        operands = _plus_operands(node)
        if operands is None:
            return None
        shapes = [url_shape(operand, parsed, depth + 1) for operand in operands]
        if all(shape is None for shape in shapes):
            return None
        return "".join(shape or HOLE for shape in shapes)
    if kind in CALL_KINDS:
        name = callee_name(node)
        args = positional_args(node)
        if name == "URL" and args:  # new URL(path, base)
            return url_shape(args[0], parsed, depth + 1)
        if name in ("format", "encodeURI") and kind != "new_expression":
            receiver = callee_receiver(node)
            if receiver is not None and name == "format":
                return url_shape(receiver, parsed, depth + 1)
            if args:
                return url_shape(args[0], parsed, depth + 1)
        return None
    if kind == "identifier" and parsed is not None and depth < _MAX_NAME_HOPS:
        binding = resolve_name(node.text(), node, parsed)
        if binding.kind == "value" and binding.node is not None:
            return url_shape(binding.node, parsed, depth + 1)
    return None


_CONVERSATION_PATH = re.compile(r"(?:^|/)conversations/[^/?#]+/(?P<rest>[^?#]*)")
_AGENT_SERVER_EVENTS = re.compile(r"(?:^|/)api/conversations/[^/?#]+/events(?:[/?#]|$)")
_SOCKET_PATH = re.compile(r"(?:^|/)sockets/(?P<name>[^/?#]+)")


def conversation_action(shape: str) -> str | None:
    """What an agent-server conversation URL addresses after the id: "events", "pause" …

    ``/api/v1/app-conversations/…`` (the cloud app server) and ``/api/v1/sandboxes/…`` do not
    match: the segment must be exactly ``conversations``.
    """
    match = _CONVERSATION_PATH.search(shape)
    if match is None:
        return None
    return match["rest"].rstrip("/")


def socket_kind(shape: str) -> str | None:
    """ "events" for ``/sockets/events/…``, another name for other sockets, None if no socket."""
    match = _SOCKET_PATH.search(shape)
    return match["name"] if match is not None else None


def is_app_server_url(shape: str) -> bool:
    return "app-conversations" in shape or "/sandboxes" in shape


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request a call makes: its URL (flattened), verb when known, and payload."""

    call: SgNode
    shape: str
    method: str | None
    body: SgNode | None


_VERBS = ("post", "get", "put", "patch", "delete", "head", "options")
_FETCH_INIT_KEYS = ("method", "body", "headers", "json", "signal", "credentials")


def _verb_from_name(name: str) -> str | None:
    words = name_words(name)
    if "post" in words:
        return "POST"
    for word in words:
        if word in _VERBS:
            return word.upper()
    return None


def _object_value(node: SgNode | None, parsed: ParsedFile) -> SgNode | None:
    """An object literal, directly or through one same-scope variable."""
    if node is None:
        return None
    node = unwrap(node)
    if node.kind() in ("object", "dictionary"):
        return node
    if node.kind() == "identifier":
        binding = resolve_name(node.text(), node, parsed)
        if binding.kind == "value" and binding.node is not None:
            value = unwrap(binding.node)
            if value.kind() in ("object", "dictionary"):
                return value
    return None


def http_call(call: SgNode, parsed: ParsedFile) -> HttpCall | None:
    """Read a call as an HTTP request, if its URL argument is built from strings."""
    name = callee_name(call) or ""
    args = positional_args(call)
    method: str | None = _verb_from_name(name)
    body: SgNode | None = None
    if parsed.python:
        kwargs = keyword_args(call)
        url = kwargs.get("url")
        if name == "request" and args:
            verb = string_value(args[0])
            method = verb.upper() if verb else None
            url = url or (args[1] if len(args) > 1 else None)
        elif url is None and args:
            url = args[0]
        if "method" in kwargs:
            verb = string_value(kwargs["method"])
            method = verb.upper() if verb else method
        for key in ("json", "data", "content"):
            if key in kwargs:
                body = kwargs[key]
                break
    else:
        if not args:
            return None
        config = unwrap(args[0])
        if config.kind() == "object":
            # axios({ method, url, data }) or a proxy helper({ method, path, body }).
            url = object_get(config, "url") or object_get(config, "path")
            init: SgNode | None = config
        else:
            url = args[0]
            init = _object_value(args[1], parsed) if len(args) > 1 else None
        if init is not None:
            verb_node = object_get(init, "method")
            if verb_node is not None:
                verb = string_value(verb_node)
                method = verb.upper() if verb else "POST"  # method: someVar: assume a write
            for key in ("body", "json", "data"):
                value = object_get(init, key)
                if value is not None:
                    body = value
                    break
        if body is None and init is not config and len(args) > 1 and method in ("POST", "PUT"):
            second = unwrap(args[1])
            keys = (
                {key for key, _ in object_entries(second)} if second.kind() == "object" else set()
            )
            if not keys & set(_FETCH_INIT_KEYS):
                body = args[1]  # axios.post(url, data)
    if url is None:
        return None
    shape = url_shape(url, parsed)
    if shape is None or _defines_route(call, shape):
        return None
    return HttpCall(call, shape, method, body)


_ROUTE_PARAM = re.compile(r"/:[A-Za-z_]")


def _defines_route(call: SgNode, shape: str) -> bool:
    """A server or mock route (``app.post("/x/:id", handler)``, ``@router.post(…)``, MSW's
    ``http.post("*/x", resolver)``) names a path; it sends nothing."""
    parent = call.parent()
    if parent is not None and parent.kind() == "decorator":
        return True
    if shape.startswith("*") or _ROUTE_PARAM.search(shape):
        return True
    return any(unwrap(arg).kind() in FUNCTION_KINDS for arg in positional_args(call)[1:])


def http_calls(parsed: ParsedFile) -> Iterator[HttpCall]:
    kind = "call" if parsed.python else "call_expression"
    for call in parsed.root.find_all(kind=kind):
        request = http_call(call, parsed)
        if request is not None:
            yield request


# ---- the agent-server signal --------------------------------------------------------------

TS_CLIENT = "@openhands/typescript-client"
_NEEDLES = (TS_CLIENT, "openhands.sdk", "openhands import", "sockets/events", "initial_message")


def may_signal(text: str) -> bool:
    """Cheap pre-filter: without one of these substrings no signal can be in the file."""
    return any(needle in text for needle in _NEEDLES) or (
        "conversations" in text and "events" in text
    )


def _is_sdk_module(name: str) -> bool:
    return name == "openhands.sdk" or name.startswith("openhands.sdk.")


def imports_sdk(parsed: ParsedFile) -> bool:
    """Imports of ``openhands.sdk`` in any form (``import``, ``from … import``, submodules)."""
    if not parsed.python or "openhands" not in parsed.text:
        return False
    root = parsed.root
    for statement in root.find_all(kind="import_from_statement"):
        module = statement.field("module_name")
        if module is None:
            continue
        if _is_sdk_module(module.text()):
            return True
        if module.text() == "openhands":
            names = [child.text() for child in statement.field_children("name")]
            if any(name.split(" as ")[0].strip() == "sdk" for name in names):
                return True
    for statement in root.find_all(kind="import_statement"):
        for child in statement.named_children():
            target = child.field("name") if child.kind() == "aliased_import" else child
            if target is not None and _is_sdk_module(target.text()):
                return True
    return False


def imports_ts_client(parsed: ParsedFile) -> bool:
    if parsed.python or TS_CLIENT not in parsed.text:
        return False
    for node in parsed.root.find_all(kind="string"):
        value = string_value(node)
        if value is not None and (value == TS_CLIENT or value.startswith(TS_CLIENT + "/")):
            return True
    return False


def _string_nodes(parsed: ParsedFile) -> Iterable[SgNode]:
    root = parsed.root
    yield from root.find_all(kind="string")
    if not parsed.python:
        yield from root.find_all(kind="template_string")
        binary = "binary_expression"
    else:
        binary = "binary_operator"
    for node in root.find_all(kind=binary):
        parent = node.parent()
        if parent is None or parent.kind() != binary:
            yield node


def _mentions_initial_message(parsed: ParsedFile) -> bool:
    if "initial_message" not in parsed.text:
        return False
    root = parsed.root
    if parsed.python:
        # A keyword argument or attribute named so; a plain variable of that name is not a key.
        for node in root.find_all(kind="identifier", regex="^initial_message$"):
            parent = node.parent()
            if parent is not None and parent.kind() in ("keyword_argument", "attribute"):
                return True
    else:
        for kind in ("property_identifier", "shorthand_property_identifier"):
            if root.find(kind=kind, regex="^initial_message$") is not None:
                return True
    return any(string_value(node) == "initial_message" for node in root.find_all(kind="string"))


def has_signal(parsed: ParsedFile) -> bool:
    """Whether a file talks to an agent-server conversation (import, path or start key)."""
    if not may_signal(parsed.text):
        return False
    if imports_ts_client(parsed) or imports_sdk(parsed):
        return True
    for node in _string_nodes(parsed):
        shape = url_shape(node)
        if shape is None:
            continue
        if _AGENT_SERVER_EVENTS.search(shape) or socket_kind(shape) == "events":
            return True
    return _mentions_initial_message(parsed)


def touches_conversation_api(changeset: ChangeSet) -> bool:
    """Whether any changed file still present carries an agent-server signal.

    The whole head text is read when the source gave it, else the lines the diff shows.
    """
    for changed in changeset.files:
        if language_for(changed.path) is None or not may_signal(_head_text(changed)[0]):
            continue  # skip the parse: no signal can be in this file
        parsed = parse_changed(changed)
        if isinstance(parsed, ParsedFile) and has_signal(parsed):
            return True
    return False


_WORKSPACES: dict[int, tuple[weakref.ref[ChangeSet], Workspace]] = {}


# ---- cloud-only code ----------------------------------------------------------------------

_CLOUD_PREFIXES = ("is", "has", "uses", "using", "use", "in", "on")


def _names_cloud(node: SgNode) -> bool:
    """``isCloud``, ``backend.isCloud``, ``is_cloud_mode()``, ``Backend.CLOUD`` …"""
    node = unwrap(node)
    kind = node.kind()
    if kind in CALL_KINDS:
        name = callee_name(node)
    elif kind in ("member_expression", "attribute"):
        prop = node.field("property") or node.field("attribute")
        name = prop.text() if prop is not None else None
    elif kind == "identifier":
        name = node.text()
    else:
        return False
    if not name:
        return False
    words = name_words(name)
    return "cloud" in words and (words[0] in _CLOUD_PREFIXES or words == ["cloud"])


def _is_cloud_value(node: SgNode) -> bool:
    """The literal ``"cloud"`` or an enum member named cloud (``BackendKind.Cloud``)."""
    value = string_value(node)
    if value is not None:
        return value.lower() == "cloud"
    node = unwrap(node)
    if node.kind() in ("member_expression", "attribute"):
        prop = node.field("property") or node.field("attribute")
        return prop is not None and prop.text().lower() == "cloud"
    return False


def cloud_polarity(condition: SgNode, depth: int = 0) -> tuple[bool, bool]:
    """(then-branch runs only on cloud, else-branch runs only on cloud) for a condition."""
    if depth > _MAX_NESTING:
        return False, False
    node = unwrap(condition)
    kind = node.kind()
    if kind == "unary_expression":
        bang, argument = node.field("operator"), node.field("argument")
        if bang is not None and bang.text() == "!" and argument is not None:
            then_cloud, else_cloud = cloud_polarity(argument, depth + 1)
            return else_cloud, then_cloud
        return False, False
    if kind == "not_operator":
        argument = node.field("argument")
        if argument is None:
            return False, False
        then_cloud, else_cloud = cloud_polarity(argument, depth + 1)
        return else_cloud, then_cloud
    if kind in ("binary_expression", "boolean_operator"):
        operator_node = node.field("operator")
        operator = operator_node.text() if operator_node is not None else ""
        left, right = node.field("left"), node.field("right")
        if left is None or right is None:
            return False, False
        if operator in ("===", "==", "!==", "!="):
            if _is_cloud_value(left) or _is_cloud_value(right):
                return (True, False) if operator in ("===", "==") else (False, True)
            return False, False
        left_then, left_else = cloud_polarity(left, depth + 1)
        right_then, right_else = cloud_polarity(right, depth + 1)
        if operator in ("&&", "and"):
            return left_then or right_then, left_else and right_else
        if operator in ("||", "or"):
            return left_then and right_then, left_else or right_else
        return False, False
    if kind == "comparison_operator":
        operands = node.named_children()
        operators = [child.text() for child in node.children() if not child.is_named()]
        if len(operands) != 2 or len(operators) != 1:
            return False, False
        if _is_cloud_value(operands[0]) or _is_cloud_value(operands[1]):
            if operators[0] in ("==", "is"):
                return True, False
            if operators[0] in ("!=", "is not"):
                return False, True
        return False, False
    if _names_cloud(node):
        return True, False
    return False, False


# Blocks an early `return` can leave: function bodies and the blocks inside them (a module
# has no `return`, and scanning its top level would cost a walk per statement).
_BLOCK_KINDS = frozenset({"statement_block", "block", "switch_body"})


def _always_exits(statement: SgNode) -> bool:
    kind = statement.kind()
    if kind in ("return_statement", "throw_statement", "raise_statement"):
        return True
    if kind in ("statement_block", "block"):
        named = [child for child in statement.named_children() if child.kind() != "comment"]
        return bool(named) and _always_exits(named[-1])
    return False


def _if_parts(statement: SgNode) -> tuple[SgNode | None, SgNode | None, list[SgNode]]:
    return (
        statement.field("condition"),
        statement.field("consequence"),
        statement.field_children("alternative"),
    )


def in_cloud_branch(node: SgNode) -> bool:
    """Whether ``node`` only runs when the backend is a cloud one.

    Inside the then-branch of a cloud check (``if (backend.kind === "cloud")``, ``isCloud``,
    ``is_cloud()`` …) or the else-branch of a not-cloud check, in the cloud arm of a ternary
    or ``&&``, in a ``case "cloud":``, or after ``if (!isCloud) { …; return }``.
    """
    child = node
    for ancestor in node.ancestors():
        kind = ancestor.kind()
        if kind in ("if_statement", "elif_clause", "ternary_expression", "conditional_expression"):
            if _branch_is_cloud(ancestor, child):
                return True
        elif kind in ("binary_expression", "boolean_operator"):
            operator = ancestor.field("operator")
            left, right = ancestor.field("left"), ancestor.field("right")
            if operator is not None and left is not None and right is not None and right == child:
                then_cloud, else_cloud = cloud_polarity(left)
                if operator.text() in ("&&", "and") and then_cloud:
                    return True
                if operator.text() in ("||", "or") and else_cloud:
                    return True
        elif kind == "switch_case":
            value = ancestor.field("value")
            if value is not None and _is_cloud_value(value):
                return True
        if kind in _BLOCK_KINDS and _after_local_exit(child):
            return True
        child = ancestor
    return False


def _branch_is_cloud(statement: SgNode, child: SgNode) -> bool:
    kind = statement.kind()
    if kind == "conditional_expression":  # Python: a if cond else b
        named = statement.named_children()
        if len(named) < 3:
            return False
        then_cloud, else_cloud = cloud_polarity(named[1])
        return (contains(named[0], child) and then_cloud) or (
            contains(named[2], child) and else_cloud
        )
    condition, consequence, alternatives = _if_parts(statement)
    if condition is None:
        return False
    then_cloud, else_cloud = cloud_polarity(condition)
    if consequence is not None and contains(consequence, child):
        return then_cloud
    return any(contains(alternative, child) for alternative in alternatives) and else_cloud


def _after_local_exit(child: SgNode) -> bool:
    """``if (!isCloud) { …; return }`` earlier in the block: what follows is cloud-only."""
    for statement in child.prev_all():
        if statement.kind() != "if_statement":
            continue
        condition, consequence, alternatives = _if_parts(statement)
        if condition is None or consequence is None or alternatives:
            continue
        if _always_exits(consequence) and cloud_polarity(condition)[1]:
            return True
    return False
