"""CEL in grants: an expression compiled with the variables it may use, the values it
reads, and why an evaluation failed, told without the record's values (the reason goes to the
audit trail)."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any

import cel

from xbus.core.errors import XbusError

_POSITION = re.compile(r"<input>:(\d+):(\d+)")
_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")


def cel_value(value: Any) -> Any:
    """A decoded Avro value as CEL takes it: dates become timestamps (midnight UTC),
    decimals doubles, UUIDs strings."""
    if isinstance(value, dict):
        return {k: cel_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cel_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def compile_cel(source: str, where: str) -> tuple[Any, str | None]:
    """The compiled expression, or why it does not compile (with line and column). Which
    variables and fields it may read, and its type, ``xbus.streams.expression_check`` says
    (it knows a macro's own variables, which the compiled program lists as free)."""
    try:
        program = cel.compile(source)
    except ValueError as exc:
        text = str(exc)
        found = _POSITION.search(text)
        position = f" at line {found.group(1)}, column {found.group(2)}" if found else ""
        detail = text.split("ERROR: ", 1)[-1].split("\n", 1)[0]
        return None, f"{where}: CEL does not compile{position}: {detail}"
    return program, None


def cel_type(value: Any) -> str:
    """The CEL name of a value's type (never the value itself)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.timedelta):
        return "duration"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "bytes" if isinstance(value, bytes) else type(value).__name__


def _named(name: object, source: str) -> str | None:
    """``name`` if the expression itself spells it (so saying it reveals nothing of a
    record), else None."""
    if isinstance(name, str) and re.search(rf"\b{re.escape(name)}\b", source):
        return name
    return None


def cel_failure(exc: Exception, source: str) -> str:
    """Why evaluating the CEL expression ``source`` raised ``exc``, in words that never carry
    the record's values: CEL's own messages may (``overflow in 'add' on 123 and 4``), and the
    reason goes to the audit trail. Names are kept where the expression spells them."""
    text = str(exc)
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, OverflowError):
        return "arithmetic overflow"
    if isinstance(exc, IndexError):
        return "index out of range"
    if isinstance(exc, KeyError):
        name = _named(exc.args[0] if exc.args else None, source)
        return f"no field or key {name!r}" if name else "no such field or key"
    if isinstance(exc, TypeError):
        if text.startswith("Unsupported operation: "):  # names the operand types only
            return text.split(".", 1)[0].lower()
        return "no such overload: the operation is not defined for these operand types"
    if isinstance(exc, RuntimeError):
        found = _QUOTED.search(text)
        name = _named(found.group(1), source) if found else None
        if text.startswith("Function "):
            return f"function {name}() failed" if name else "a function failed"
        if text.startswith("Undefined variable or function"):
            # CEL says so too of a function given arguments it does not take (size(null)).
            return (
                f"no function or variable {name!r} that applies here"
                if name
                else "no function or variable that applies here"
            )
    return type(exc).__name__


def failure_text(exc: Exception) -> str:
    """Why a step other than CEL raised ``exc``, without the record's values: the bus's own
    errors say what to do; for anything else, what kind of error it was."""
    if isinstance(exc, XbusError):
        return str(exc)
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return f"the record has no field {exc.args[0]!r}"  # a schema's name, not a value
    return type(exc).__name__


# What a derived field's value may be, by its declared type: what its Avro type takes.
DERIVED_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: type(v) is int and -(2**31) <= v < 2**31,
    "long": lambda v: type(v) is int and -(2**63) <= v < 2**63,
    "double": lambda v: type(v) in (float, int),
    "boolean": lambda v: type(v) is bool,
}
