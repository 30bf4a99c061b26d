"""What a CEL expression in a grant reads and what it gives, known before it runs.

The expression is parsed into a tree (cel-python's CEL grammar) and walked against the
dataset's schema: each field it selects is resolved to its path in the dataset (so that its
classification is known), and each operation is typed as CEL types it (no coercion between
int, uint and double). What cannot be resolved precisely is taken as reading more, never
less: a record used as a whole (``string(record)``, ``record == x``, ``dyn(record)``,
``[record][0].x``, ``record[key]`` with a key that is not a literal) reads every field below
it. Comprehension variables (``exists``, ``all``, ``map``, ``filter``) are bound in their
macro only and read what their list or map reads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from xbus.core.avro_names import PRIMITIVES, NamedTypes, full_name
from xbus.core.catalog import Dataset

RANKS = {"public": 0, "internal": 1, "personal": 2, "sensitive": 3}
PROTECTED = ("personal", "sensitive")


@dataclass(frozen=True)
class CelType:
    """A CEL type as the checker knows it: ``kind`` is a CEL type name, ``dyn`` when it is
    known only at run time, ``record`` for a record of the dataset (``fields`` by name)."""

    kind: str
    nullable: bool = False
    item: CelType | None = None  # a list's items, a map's values
    fields: tuple[tuple[str, CelType], ...] = ()

    def field_type(self, name: str) -> CelType | None:
        """The type of the record field ``name``, or None if the record has none."""
        return next((t for n, t in self.fields if n == name), None)

    def __str__(self) -> str:
        text = self.kind
        if self.kind in ("list", "map") and self.item is not None:
            text = f"{self.kind}({self.item})"
        return f"{text} or null" if self.nullable and self.kind != "null" else text


DYN = CelType("dyn")
BOOL, INT, UINT, DOUBLE = CelType("bool"), CelType("int"), CelType("uint"), CelType("double")
STRING, BYTES, NULL = CelType("string"), CelType("bytes"), CelType("null")
TIMESTAMP, DURATION, TYPE = CelType("timestamp"), CelType("duration"), CelType("type")
NUMBERS = ("int", "uint", "double")


@dataclass(frozen=True)
class Value:
    """An expression's value as far as it is known before it runs: its type, the dataset
    paths it reads (``""`` is the whole record), and whether it *is* the node at its one
    path (so selecting a field of it reads that field only)."""

    type: CelType
    reads: frozenset[str] = frozenset()
    exact: bool = False


def record_type(dataset: Dataset) -> CelType:
    """The CEL type of the dataset's record."""
    names = NamedTypes(dataset.schema)
    return _avro(dataset.schema, names, dataset.schema.get("namespace", ""), 0)


def _avro(t: Any, names: NamedTypes, namespace: str, depth: int) -> CelType:
    if depth > 32:  # a recursive schema: deeper than any grant reads
        return DYN
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        inner = _avro(branches[0], names, namespace, depth) if len(branches) == 1 else DYN
        return replace(inner, nullable=len(branches) < len(t))
    if isinstance(t, str):
        if t in PRIMITIVES:
            return _PRIMITIVE[t]
        found = names.lookup(t, namespace)
        return _avro(found, names, namespace, depth + 1) if found is not None else DYN
    logical = t.get("logicalType")
    if logical == "decimal":
        return DOUBLE
    if logical in ("date", "timestamp-millis", "timestamp-micros"):
        return TIMESTAMP
    if logical == "uuid":
        return STRING
    kind = t.get("type")
    if kind == "record":
        space = full_name(t["name"], t.get("namespace", namespace)).rsplit(".", 1)[0]
        return CelType(
            "record",
            fields=tuple(
                (f["name"], _avro(f["type"], names, space, depth + 1)) for f in t["fields"]
            ),
        )
    if kind == "enum":
        return STRING
    if kind == "fixed":
        return BYTES
    if kind == "array":
        return CelType("list", item=_avro(t["items"], names, namespace, depth + 1))
    if kind == "map":
        return CelType("map", item=_avro(t["values"], names, namespace, depth + 1))
    return _avro(kind, names, namespace, depth + 1)


_PRIMITIVE = {
    "null": NULL,
    "boolean": BOOL,
    "int": INT,
    "long": INT,
    "float": DOUBLE,
    "double": DOUBLE,
    "bytes": BYTES,
    "string": STRING,
}
# Type names are values in CEL (``type(x) == int``).
_TYPE_NAMES = {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type"}
_TIMESTAMP_PARTS = (
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
)
_STRING_TESTS = ("contains", "startsWith", "endsWith", "matches")
# What each conversion takes (the functions of the CEL runtime xbus evaluates with).
_CONVERSIONS: dict[str, tuple[CelType, tuple[str, ...]]] = {
    "int": (INT, ("int", "uint", "double", "string")),
    "uint": (UINT, ("int", "uint", "double", "string")),
    "double": (DOUBLE, ("int", "uint", "double", "string")),
    "string": (STRING, ("string", "int", "uint", "double", "bytes", "timestamp", "duration")),
    "bytes": (BYTES, ("string", "bytes")),
    "timestamp": (TIMESTAMP, ("string", "timestamp")),
    "duration": (DURATION, ("string",)),
}
_MACROS = ("all", "exists", "exists_one", "map", "filter")
FUNCTIONS = sorted(
    {"size", "has", "dyn", "type", *_CONVERSIONS, *_STRING_TESTS, *_TIMESTAMP_PARTS, *_MACROS}
)


@dataclass(frozen=True)
class Variable:
    """A variable an expression may use: its type, and the dataset node it is (``""`` for a
    record of the dataset) or None for one that reads nothing of the record."""

    type: CelType
    node: str | None = None


@dataclass(frozen=True)
class Checked:
    """What checking one expression found: its type, the dataset paths it reads, and its
    errors (each a sentence, with the column in the expression where it is known)."""

    type: CelType
    reads: frozenset[str]
    errors: tuple[str, ...]
    # Fields it selects of a record that may be null, untested: it then raises.
    unguarded: tuple[str, ...] = ()


@dataclass
class _Checker:
    variables: Mapping[str, Variable]
    errors: list[str] = field(default_factory=list)
    # What a guard proves is not null where it is read (after in `after != null && after.x`).
    narrowed: frozenset[str] = frozenset()
    # Fields selected of a record that may be null there: selecting raises if it is.
    unguarded: list[str] = field(default_factory=list)

    def guarded(self, node: Tree[Any], scope: Mapping[str, Value], by: set[str]) -> Value:
        """``node`` walked where ``by`` (variables and fields, as spelled) are not null."""
        before = self.narrowed
        self.narrowed = before | by
        try:
            return self.walk(node, scope)
        finally:
            self.narrowed = before

    def fail(self, node: Tree[Any] | Token | None, message: str) -> Value:
        column = getattr(node, "column", None) or getattr(
            getattr(node, "meta", None), "column", None
        )
        self.errors.append(f"{message} (at column {column})" if column else message)
        return Value(CelType("error"))

    # -- the grammar's rules ------------------------------------------------------------
    def walk(self, node: Tree[Any], scope: Mapping[str, Value]) -> Value:
        rule = node.data
        kids = node.children
        if rule in ("expr",):
            if len(kids) == 1:
                return self.walk(kids[0], scope)
            condition = self.walk(kids[0], scope)
            self.want_bool(kids[0], condition, "the condition of ?:")
            a = self.guarded(kids[1], scope, _guards(kids[0], True))
            b = self.guarded(kids[2], scope, _guards(kids[0], False))
            result = _unify(a.type, b.type)
            if condition.type.nullable:  # a condition that may fail fails the whole
                result = replace(result, nullable=True)
            if a.exact and b.exact and a.reads == b.reads and not condition.reads:
                # (after != null ? after : before): one node of the record either way.
                return Value(result, a.reads, exact=True)
            return Value(result, condition.reads | a.reads | b.reads)
        if rule in ("conditionalor", "conditionaland"):
            if len(kids) == 1:
                return self.walk(kids[0], scope)
            # CEL evaluates either side first: each is read where the other holds (&&) or
            # fails (||), so a guard on one side protects the other.
            holds = rule == "conditionaland"
            a = self.guarded(kids[0], scope, _guards(kids[1], holds))
            b = self.guarded(kids[1], scope, _guards(kids[0], holds))
            op = "||" if rule == "conditionalor" else "&&"
            self.want_bool(kids[0], a, f"the left of {op}")
            self.want_bool(kids[1], b, f"the right of {op}")
            return Value(_fails_on_null(BOOL, a, b), a.reads | b.reads)
        if rule in ("relation", "addition", "multiplication"):
            if len(kids) == 1:
                return self.walk(kids[0], scope)
            left_node = kids[0]
            a = self.walk(left_node.children[0], scope)
            b = self.walk(kids[1], scope)
            reads = a.reads | b.reads
            if left_node.data in ("relation_eq", "relation_ne") and NULL in (a.type, b.type):
                # Whether an event's before or after is there tells its op, not its values.
                reads = _presence(a) | _presence(b)
            result = self.operator(node, left_node.data, a.type, b.type)
            if left_node.data not in ("relation_eq", "relation_ne"):
                result = _fails_on_null(result, a, b)
            return Value(result, reads)
        if rule == "unary":
            if len(kids) == 1:
                return self.walk(kids[0], scope)
            v = self.walk(kids[1], scope)
            if kids[0].data == "unary_not":
                self.want_bool(kids[1], v, "the operand of !")
                return Value(_fails_on_null(BOOL, v), v.reads)
            if v.type.kind not in ("int", "double", "duration", "dyn", "error"):
                return self.fail(node, f"no such overload: -{v.type}")
            return Value(v.type, v.reads)
        if rule in ("member", "primary", "paren_expr"):
            return self.walk(kids[0], scope)
        if rule == "member_dot":
            target = self.walk(kids[0], scope)
            return self.not_null_if_guarded(node, self.select(kids[1], target, str(kids[1])))
        if rule == "member_dot_arg":
            name = str(kids[1])
            args = list(kids[2].children) if len(kids) > 2 else []
            return self.call(node, name, kids[0], args, scope)
        if rule == "member_index":
            return self.index(node, self.walk(kids[0], scope), kids[1], scope)
        if rule == "member_object":
            return self.fail(node, "message construction (Name{...}) is not available here")
        if rule == "literal":
            return Value(_literal(cast(Token, kids[0])))
        if rule in ("ident", "dot_ident"):
            return self.not_null_if_guarded(node, self.ident(cast(Token, kids[0]), scope))
        if rule in ("ident_arg", "dot_ident_arg"):
            args = list(kids[1].children) if len(kids) > 1 else []
            return self.call(node, str(kids[0]), None, args, scope)
        if rule == "list_lit":
            items = [self.walk(k, scope) for k in (kids[0].children if kids else [])]
            item = _unify_all([_whole(v).type for v in items])
            return Value(CelType("list", item=item), _reads(items))
        if rule == "map_lit":
            parts = [self.walk(k, scope) for k in (kids[0].children if kids else [])]
            values = [_whole(v).type for v in parts[1::2]]
            return Value(CelType("map", item=_unify_all(values)), _reads(parts))
        return self.fail(node, f"{rule} is not supported in a grant's expression")

    def not_null_if_guarded(self, node: Tree[Any], value: Value) -> Value:
        if value.type.nullable and _chain(node) in self.narrowed:
            return replace(value, type=replace(value.type, nullable=False))
        return value

    def ident(self, token: Token, scope: Mapping[str, Value]) -> Value:
        name = str(token)
        if name in scope:
            return scope[name]
        variable = self.variables.get(name)
        if variable is not None:
            if variable.node is None:
                return Value(variable.type)
            return Value(variable.type, frozenset({variable.node}), exact=True)
        if name in _TYPE_NAMES:
            return Value(TYPE)
        known = sorted({*self.variables, *(k for k in scope if not k.startswith("#"))})
        return self.fail(
            token, f"unknown variable {name!r}; an expression here may use {', '.join(known)}"
        )

    def select(self, where: Token | Tree[Any], target: Value, name: str) -> Value:
        t = target.type
        if t.nullable and t.kind in ("record", "map"):
            self.unguarded.append(name)
        if t.kind == "record":
            found = t.field_type(name)
            if found is None:
                path = next(iter(target.reads), "") if target.exact else ""
                owner = f"{path}" if path else "the record"
                return self.fail(
                    where,
                    f"no field {name!r} in {owner} (its fields: "
                    f"{', '.join(n for n, _ in t.fields)})",
                )
            if t.nullable or found.nullable:
                found = replace(found, nullable=True)
            if target.exact:
                (path,) = target.reads
                return Value(found, frozenset({f"{path}.{name}" if path else name}), exact=True)
            return Value(found, target.reads)
        if t.kind == "map":
            return Value(t.item or DYN, target.reads, exact=target.exact)
        if t.kind in ("dyn", "error"):
            return Value(t, target.reads)
        return self.fail(where, f"cannot select field {name!r} of a {t}")

    def index(self, node: Tree[Any], target: Value, key_node: Tree[Any], scope: Any) -> Value:
        key = self.walk(key_node, scope)
        t = target.type
        literal = _string_literal(key_node)
        if t.kind == "record" and literal is not None:
            return self.select(key_node, target, literal)
        if t.kind == "record":
            # A field chosen at run time: any of them.
            return Value(DYN, _whole(target).reads | key.reads)
        if t.kind == "list":
            if key.type.kind not in ("int", "uint", "dyn", "error"):
                return self.fail(key_node, f"a list's index is an int, not {key.type}")
            return (
                Value(t.item or DYN, target.reads | key.reads, exact=False)
                if not (target.exact and not key.reads)
                else Value(t.item or DYN, target.reads, exact=True)
            )
        if t.kind == "map":
            if target.exact and not key.reads:
                return Value(t.item or DYN, target.reads, exact=True)
            return Value(t.item or DYN, target.reads | key.reads)
        if t.kind in ("dyn", "error"):
            return Value(t, target.reads | key.reads)
        return self.fail(node, f"cannot index a {t}")

    def call(
        self,
        node: Tree[Any],
        name: str,
        target_node: Tree[Any] | None,
        arg_nodes: list[Tree[Any]],
        scope: Mapping[str, Value],
    ) -> Value:
        if target_node is not None and name in _MACROS:
            return self.macro(node, name, self.walk(target_node, scope), arg_nodes, scope)
        if target_node is None and name == "has":
            if len(arg_nodes) != 1:
                return self.fail(node, "has() takes one field selection, e.g. has(record.x)")
            selected = self.walk(arg_nodes[0], scope)
            return Value(BOOL, _whole(selected).reads)
        args = [self.walk(a, scope) for a in arg_nodes]
        if target_node is not None:
            args.insert(0, self.walk(target_node, scope))
        reads = _reads(args)
        kinds = [a.type.kind for a in args]
        if "error" in kinds:
            return Value(CelType("error"), reads)
        if name == "dyn" and len(args) == 1:
            return Value(DYN, reads)
        if name == "type" and len(args) == 1:
            return Value(TYPE, reads)
        if name == "size" and len(args) == 1:
            return self.expect(node, name, args, [("string", "bytes", "list", "map")], INT)
        if name in _STRING_TESTS and target_node is not None:
            return self.expect(node, name, args, [("string",), ("string",)], BOOL)
        if name in _TIMESTAMP_PARTS and target_node is not None:
            return self.expect(node, name, args, [("timestamp",)], INT)
        if name in _CONVERSIONS and target_node is None and len(args) == 1:
            result, takes = _CONVERSIONS[name]
            return self.expect(node, name, args, [takes], result)
        return self.fail(
            node,
            f"no function {name}() taking {len(args)} argument(s) here; the functions "
            f"available: {', '.join(FUNCTIONS)}",
        )

    def expect(
        self,
        node: Tree[Any],
        name: str,
        args: list[Value],
        takes: list[tuple[str, ...]],
        result: CelType,
    ) -> Value:
        reads = _reads(args)
        if len(args) != len(takes):
            return self.fail(node, f"{name}() takes {len(takes)} argument(s), not {len(args)}")
        for arg, kinds in zip(args, takes, strict=True):
            if arg.type.kind not in (*kinds, "dyn"):
                return self.fail(
                    node,
                    f"no such overload: {name}() of a {arg.type.kind} "
                    f"(it takes {' or '.join(kinds)})",
                )
        return Value(_fails_on_null(result, *args), reads)

    def macro(
        self,
        node: Tree[Any],
        name: str,
        target: Value,
        arg_nodes: list[Tree[Any]],
        scope: Mapping[str, Value],
    ) -> Value:
        counts = {"map": (2, 3)}.get(name, (2,))
        if len(arg_nodes) not in counts:
            return self.fail(node, f"{name}() takes a variable and an expression")
        variable = _bare_ident(arg_nodes[0])
        if variable is None:
            return self.fail(arg_nodes[0], f"the first argument of {name}() names a variable")
        t = target.type
        if t.kind == "list":
            element = Value(t.item or DYN, target.reads, exact=target.exact)
        elif t.kind == "map":
            element = Value(STRING if t.item is not None else DYN, target.reads)
        elif t.kind in ("dyn", "error"):
            element = Value(t, target.reads)
        else:
            return self.fail(node, f"{name}() applies to a list or a map, not a {t}")
        inner = {**scope, variable: element}
        parts = [self.walk(a, inner) for a in arg_nodes[1:]]
        reads = target.reads | _reads(parts)
        if name in ("all", "exists", "exists_one", "filter") or len(parts) == 2:
            self.want_bool(arg_nodes[1], parts[0], f"the condition of {name}()")
        if name == "filter":
            return Value(_fails_on_null(CelType("list", item=element.type), target), reads)
        if name == "map":
            mapped = CelType("list", item=_whole(parts[-1]).type)
            return Value(_fails_on_null(mapped, target), reads)
        return Value(_fails_on_null(BOOL, target, *parts), reads)

    def operator(self, node: Tree[Any], op: str, a: CelType, b: CelType) -> CelType:
        if "error" in (a.kind, b.kind):
            return CelType("error")
        symbol = _SYMBOLS[op]
        if op in ("relation_eq", "relation_ne"):
            return BOOL
        if op == "relation_in":
            if b.kind not in ("list", "map", "dyn"):
                self.fail(node, f"no such overload: {a} in {b} (in takes a list or a map)")
            return BOOL
        if "dyn" in (a.kind, b.kind):
            return BOOL if op.startswith("relation") else DYN
        if op.startswith("relation"):
            comparable = (a.kind in NUMBERS and b.kind in NUMBERS) or (
                a.kind == b.kind and a.kind in ("string", "bytes", "timestamp", "duration", "bool")
            )
            if not comparable:
                self.fail(node, f"no such overload: {a.kind} {symbol} {b.kind}")
            return BOOL
        result = _ARITHMETIC.get((a.kind, symbol, b.kind))
        if result is None:
            self.fail(node, f"no such overload: {a.kind} {symbol} {b.kind}")
            return CelType("error")
        if result == "list":
            return CelType("list", item=_unify(a.item or DYN, b.item or DYN))
        return CelType(result)

    def want_bool(self, node: Tree[Any], value: Value, what: str) -> None:
        if value.type.kind not in ("bool", "dyn", "error"):
            self.fail(node, f"{what} is a {value.type}, not a bool")


_SYMBOLS = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}
_ARITHMETIC: dict[tuple[str, str, str], str] = {
    **{(n, op, n): n for n in NUMBERS for op in "+-*/"},
    ("int", "%", "int"): "int",
    ("uint", "%", "uint"): "uint",
    ("string", "+", "string"): "string",
    ("bytes", "+", "bytes"): "bytes",
    ("list", "+", "list"): "list",
    ("timestamp", "+", "duration"): "timestamp",
    ("duration", "+", "timestamp"): "timestamp",
    ("duration", "+", "duration"): "duration",
    ("timestamp", "-", "duration"): "timestamp",
    ("timestamp", "-", "timestamp"): "duration",
    ("duration", "-", "duration"): "duration",
}


def _literal(token: Token) -> CelType:
    kind = token.type
    if kind == "NULL_LIT":
        return NULL
    return {
        "INT_LIT": INT,
        "UINT_LIT": UINT,
        "FLOAT_LIT": DOUBLE,
        "STRING_LIT": STRING,
        "MLSTRING_LIT": STRING,
        "BYTES_LIT": BYTES,
        "BOOL_LIT": BOOL,
    }.get(kind, DYN)


def _string_literal(node: Tree[Any]) -> str | None:
    """The text of a string literal, if ``node`` is only that."""
    while isinstance(node, Tree) and len(node.children) == 1 and node.data != "literal":
        node = node.children[0]
    if not (isinstance(node, Tree) and node.data == "literal"):
        return None
    token = cast(Token, node.children[0])
    if token.type not in ("STRING_LIT", "MLSTRING_LIT"):
        return None
    try:
        value = ast.literal_eval(str(token))
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def _bare_ident(node: Tree[Any]) -> str | None:
    while isinstance(node, Tree) and len(node.children) == 1 and node.data != "ident":
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "ident":
        return str(node.children[0])
    return None


def _unwrap(node: Any) -> Any:
    """``node`` without the grammar's one-child layers and parentheses."""
    while isinstance(node, Tree) and (
        (len(node.children) == 1 and node.data not in ("ident", "literal", "list_lit", "map_lit"))
        or node.data == "paren_expr"
    ):
        node = node.children[0]
    return node


def _chain(node: Any) -> str | None:
    """``a.b.c`` if ``node`` is only a variable and field selections, as spelled."""
    node = _unwrap(node)
    if isinstance(node, Tree) and node.data in ("ident", "dot_ident"):
        return str(node.children[0])
    if isinstance(node, Tree) and node.data == "member_dot":
        inner = _chain(node.children[0])
        return f"{inner}.{node.children[1]}" if inner else None
    return None


def _is_null(node: Any) -> bool:
    node = _unwrap(node)
    return (
        isinstance(node, Tree)
        and node.data == "literal"
        and cast(Token, node.children[0]).type == "NULL_LIT"
    )


# A well-formed event carries before or after (or both): where one is null, the other is not.
_OTHER_IMAGE = {"after": "before", "before": "after"}


def _guards(node: Any, holds: bool) -> set[str]:
    """What ``node`` being true (``holds``) or false proves is not null: ``x != null``,
    ``x == null`` when false, their conjunctions (or disjunctions when false), and the other
    image of an event whose before or after is null."""
    node = _unwrap(node)
    if not isinstance(node, Tree):
        return set()
    kids = node.children
    if node.data == "unary" and len(kids) == 2 and kids[0].data == "unary_not":
        return _guards(kids[1], not holds)
    if node.data in ("conditionaland", "conditionalor") and len(kids) == 2:
        if (node.data == "conditionaland") == holds:
            return _guards(kids[0], holds) | _guards(kids[1], holds)
        return set()
    if node.data == "relation" and len(kids) == 2 and kids[0].data in _NULL_TESTS:
        left, right = kids[0].children[0], kids[1]
        checked = _chain(left) if _is_null(right) else _chain(right) if _is_null(left) else None
        if checked is None:
            return set()
        not_null = (kids[0].data == "relation_ne") == holds
        if not_null:
            return {checked}
        return {_OTHER_IMAGE[checked]} if checked in _OTHER_IMAGE else set()
    return set()


_NULL_TESTS = ("relation_eq", "relation_ne")


def _fails_on_null(result: CelType, *operands: Value) -> CelType:
    """``result`` made nullable where an operand may be null (a ``dyn`` may be anything): the
    operation then raises, and what raises counts as null (a nullable derived field is null, a
    row filter fails)."""
    if any(o.type.nullable or o.type.kind in ("null", "dyn") for o in operands):
        return replace(result, nullable=True)
    return result


def _presence(value: Value) -> frozenset[str]:
    """What comparing ``value`` with null reads: nothing of a whole record of the event."""
    return frozenset() if value.exact and value.reads == {""} else value.reads


def _whole(value: Value) -> Value:
    """``value`` used as it is (not to select from): it reads all it may read."""
    return Value(value.type, value.reads)


def _reads(values: Iterable[Value]) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for v in values:
        out |= v.reads
    return out


def _unify(a: CelType, b: CelType) -> CelType:
    if a.kind == "error" or b.kind == "error":
        return CelType("error")
    if a.kind == "null":
        return replace(b, nullable=True)
    if b.kind == "null":
        return replace(a, nullable=True)
    if a.kind == b.kind and a.kind not in ("list", "map", "record"):
        return replace(a, nullable=a.nullable or b.nullable)
    if a == b or replace(a, nullable=True) == replace(b, nullable=True):
        return replace(a, nullable=a.nullable or b.nullable)
    return replace(DYN, nullable=a.nullable or b.nullable)


def _unify_all(types: list[CelType]) -> CelType:
    if not types:
        return DYN
    out = types[0]
    for t in types[1:]:
        out = _unify(out, t)
    return out


_PARSER: list[CELParser] = []


def check_expression(source: str, variables: Mapping[str, Variable]) -> Checked:
    """The type of the CEL expression ``source``, the dataset paths it reads, and what is
    wrong with it, given the variables it may use."""
    if not _PARSER:
        _PARSER.append(CELParser())
    try:
        tree = _PARSER[0].parse(source)
    except CELParseError as exc:
        where = f" at line {exc.line}, column {exc.column}" if getattr(exc, "line", None) else ""
        return Checked(DYN, frozenset(), (f"CEL does not parse{where}",))
    checker = _Checker(variables)
    try:
        value = checker.walk(tree, {})
    except RecursionError:
        return Checked(DYN, frozenset({""}), ("the expression is nested too deeply",))
    return Checked(
        value.type,
        _whole(value).reads,
        tuple(dict.fromkeys(checker.errors)),
        tuple(dict.fromkeys(checker.unguarded)),
    )


def covered(path: str, reads: Iterable[str]) -> bool:
    """Whether reading ``reads`` reads the dataset field ``path``."""
    return any(r == "" or path == r or path.startswith(f"{r}.") for r in reads)


def read_fields(dataset: Dataset, reads: Iterable[str]) -> dict[str, str]:
    """Every field of ``dataset`` that ``reads`` reads, with its classification."""
    reads = list(reads)
    return {p: c for p, c in dataset.classifications.items() if covered(p, reads)}


def highest(classifications: Iterable[str]) -> str:
    """The highest of ``classifications`` (``public`` when there is none)."""
    return max(classifications, key=RANKS.__getitem__, default="public")


def record_variables(dataset: Dataset) -> dict[str, Variable]:
    """What a derived field's expression may use: ``record`` (a record of the dataset),
    ``op`` and ``now``."""
    return {
        "record": Variable(record_type(dataset), ""),
        "op": Variable(STRING),
        "now": Variable(TIMESTAMP),
    }


def event_variables(dataset: Dataset, operations: Iterable[str] = ()) -> dict[str, Variable]:
    """What a row filter may use: the change event's fields; ``before`` and ``after`` are
    records of the dataset, null where one of ``operations`` does not carry them (``after``
    on a DELETE, ``before`` on a CREATE or SNAPSHOT; all four when none is given)."""
    ops = {str(o) for o in operations} or {"CREATE", "UPDATE", "DELETE", "SNAPSHOT"}
    record = record_type(dataset)
    return {
        "op": Variable(STRING),
        "before": Variable(replace(record, nullable=bool(ops & {"CREATE", "SNAPSHOT"})), ""),
        "after": Variable(replace(record, nullable="DELETE" in ops), ""),
        "ts_ms": Variable(TIMESTAMP),
        "department": Variable(STRING),
        "dataset": Variable(STRING),
        "source": Variable(CelType("map", item=DYN)),
    }
