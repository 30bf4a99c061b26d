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


def read_yaml_file(path: Path) -> YamlFile | FileProblem:
    """Read a YAML file, or say why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        content = yaml.safe_load(text)
    except OSError as exc:
        return FileProblem(str(path), None, f"cannot read: {exc}")
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
    """Every YAML file under ``targets`` as read, or the problem of a target that does not
    exist or a file that cannot be read."""
    for target in targets:
        if not target.exists():
            yield FileProblem(str(target), None, "no such file or folder")
            continue
        for path in yaml_files(target):
            yield read_yaml_file(path)
