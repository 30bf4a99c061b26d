"""Named Avro types (records, enums, fixed): their full names, where a schema defines them,
and what a name used elsewhere in it refers to. The one place that resolves Avro names, for
validation, views, column types and the envelope alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def full_name(name: str, namespace: str) -> str:
    """``name`` qualified by ``namespace`` unless it is already a full name."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def defined_name(schema: Mapping[str, Any], namespace: str = "") -> str:
    """The full name a named type's definition gives it, when it appears inside
    ``namespace`` (its own ``namespace`` key, if any, wins)."""
    return full_name(schema["name"], schema.get("namespace", namespace))


def namespace_of(full: str) -> str:
    """The namespace of a full name (empty if it has none): names used inside the type
    resolve against it."""
    return full.rsplit(".", 1)[0] if "." in full else ""


class NamedTypes:
    """The named types one schema defines, by full name (and by short name, first one wins)."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._short: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "enum", "fixed"):
                full = defined_name(schema, namespace)
                self.types[full] = schema
                self._short.setdefault(full.rsplit(".", 1)[-1], schema)
                inner = namespace_of(full)
                for f in schema.get("fields", []):
                    self._collect(f["type"], inner)
            elif kind == "array":
                self._collect(schema["items"], namespace)
            elif kind == "map":
                self._collect(schema["values"], namespace)
            elif isinstance(kind, dict | list):
                self._collect(kind, namespace)

    def lookup(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        """The definition ``name`` refers to from within ``namespace``, if the schema has it."""
        return (
            self.types.get(full_name(name, namespace))
            or self.types.get(name)
            or (self._short.get(name.rsplit(".", 1)[-1]))
        )
