"""Reading thresholds.yaml strictly, and turning every problem into one readable ConfigError.

Two jobs, kept apart from the schema in `harness.config.thresholds`:
- `read_yaml`: PyYAML's safe loader silently keeps the last of two equal keys, so a second `tp1:`
  would replace the first without a word. We compose the node tree first, reject duplicate keys
  with both line numbers, and record where every value sits (`Span`) so that
  `--harness-update-thresholds` can rewrite one number in place without touching comments.
- `describe_validation_error`: pydantic's messages name neither the file nor the valid choices;
  each error becomes `FILE: key.path[0]: problem, got VALUE` with a did-you-mean where one applies.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError, unknown_choice

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Span:
    """Where one value sits in the YAML text: the 1-based line of its key, and its character range."""

    line: int
    start: int
    end: int


def key_path(loc: Sequence[str | int]) -> str:
    """`("models", "canary", "suites", 0)` -> `models.canary.suites[0]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(text: str, source: str) -> tuple[Any, dict[Loc, Span]]:
    """Parse one YAML document; reject duplicate keys; return the data and every value's span."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the file is empty; it needs at least a 'models' mapping")
        spans: dict[Loc, Span] = {}
        _walk(node, (), spans, source)
        return loader.construct_document(node), spans
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _walk(node: yaml.Node, loc: Loc, spans: dict[Loc, Span], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line and key != "<<":
                raise ConfigError(
                    f"{source}:{line}: {key_path(loc) or 'top level'}: duplicate key {key!r}"
                    f" (first defined on line {first_line[key]})"
                )
            first_line[key] = line
            spans[(*loc, key)] = Span(line, value_node.start_mark.index, value_node.end_mark.index)
            _walk(value_node, (*loc, key), spans, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            spans[(*loc, i)] = Span(item.start_mark.line + 1, item.start_mark.index, item.end_mark.index)
            _walk(item, (*loc, i), spans, source)


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_LIMITS = {
    "greater_than_equal": ("ge", "≥"),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "≤"),
    "less_than": ("lt", "<"),
}


def describe_validation_error(exc: ValidationError, root: type[BaseModel], source: str) -> ConfigError:
    """One ConfigError listing every pydantic error as `FILE: key.path: problem`."""
    return ConfigError("\n".join(_describe(err, root, source) for err in exc.errors()))


def _describe(err: Mapping[str, Any], root: type[BaseModel], source: str) -> str:
    loc: Loc = tuple(part for part in err["loc"] if part != "[key]")
    kind, value = err["type"], err.get("input")
    parent = f"{source}: {key_path(loc[:-1]) or 'top level'}"
    where = f"{source}: {key_path(loc) or 'top level'}"
    if kind == "extra_forbidden":
        return str(unknown_choice("key", str(loc[-1]), _fields_at(root, loc[:-1]), parent))
    if kind == "missing":
        return f"{parent}: missing required key {loc[-1]!r}"
    if kind == "literal_error":
        return str(unknown_choice(str(loc[-1]), str(value), _literal_choices(root, loc), where))
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}, got {_show(value)}"
    if kind in _LIMITS:
        name, symbol = _LIMITS[kind]
        return f"{where}: must be {symbol} {err['ctx'][name]}, got {_show(value)}"
    if kind in ("string_too_short", "too_short"):
        return f"{where}: must not be empty"
    return f"{where}: {err['msg']}, got {_show(value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _annotation_at(root: type[BaseModel], loc: Loc) -> Any:
    """The declared type at a key path of the schema (model fields, dict values, list items)."""
    annotation: Any = root
    for part in loc:
        annotation = _strip_optional(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif origin in (dict, Mapping):
            annotation = typing.get_args(annotation)[1]
        elif origin in (list, tuple, Sequence):
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return _strip_optional(annotation)


def _fields_at(root: type[BaseModel], loc: Loc) -> list[str]:
    model = _annotation_at(root, loc)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _literal_choices(root: type[BaseModel], loc: Loc) -> list[str]:
    annotation = _annotation_at(root, loc)
    return [str(a) for a in typing.get_args(annotation)] if typing.get_origin(annotation) is typing.Literal else []
