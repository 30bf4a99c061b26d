"""YAML files people write (grants, subscriber deliveries): read with the line of every key,
so that each mistake can be reported as ``file:line: what``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class FileProblem:
    """One mistake in a file: where, and what."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else (f"{self.file}: {self.message}")
        )


@dataclass(frozen=True)
class YamlFile:
    """A YAML file as read: its raw content and the line of each key path."""

    path: Path
    content: Any
    lines: dict[tuple[str, ...], int]

    def line_of(self, location: tuple[Any, ...]) -> int | None:
        """The line of the deepest key of ``location`` the file has."""
        key = tuple(str(part) for part in location)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return 1


def _key_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            _key_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, str(index))
            out[path] = item.start_mark.line + 1
            _key_lines(item, path, out)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would otherwise take silently: a key given twice
    (the last would win), and a date that is no date (it would raise a bare ValueError)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is not a date and time: {exc}", node.start_mark
            ) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_yaml_timestamp)


def read_yaml_file(path: Path) -> YamlFile | FileProblem:
    """Read a YAML file, or say why it cannot be read."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        content = yaml.load(text, Loader=_StrictLoader)  # safe, stricter
    except OSError as exc:
        return FileProblem(str(path), None, f"cannot read: {exc}")
    except UnicodeDecodeError as exc:
        return FileProblem(
            str(path),
            raw[: exc.start].count(b"\n") + 1,
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return FileProblem(
            str(path),
            mark.line + 1 if mark else None,
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
        )
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _key_lines(node, (), lines)
    return YamlFile(path, content, lines)


def yaml_files(target: Path) -> Iterator[Path]:
    """The YAML files at ``target``: the file itself, or every ``*.yaml`` below a folder."""
    if target.is_dir():
        yield from sorted([*target.rglob("*.yaml"), *target.rglob("*.yml")])
    else:
        yield target


def read_yaml_targets(targets: Iterable[Path]) -> Iterator[YamlFile | FileProblem]:
    """Every YAML file under ``targets`` as read, each once, or the problem of a target that
    does not exist or a file that cannot be read."""
    seen: set[Path] = set()
    for target in targets:
        if not target.exists():
            yield FileProblem(str(target), None, "no such file or folder")
            continue
        for path in yaml_files(target):
            if path.resolve() in seen:  # named twice, or inside a folder also named
                continue
            seen.add(path.resolve())
            yield read_yaml_file(path)
