"""Typed job configs: pydantic models loaded from YAML files with dotted command-line overrides.

Every component owns a small config model (subclass of `Config`) next to its code; a job's config
nests them. A YAML file may name a parent with `extends: other.yaml` (relative to the file), which is
deep-merged underneath it, so profiles (`paper`, `local`, `smoke`) stay short. Overrides look like
`masking.alpha_noise=0.25` and take YAML values (`1e-4`, `true`, `[1, 2]`, `null`).

Errors (unknown field, wrong type, value out of range, missing file) become one `ConfigError` line
naming the field and the source, e.g.
`configs/train/smoke.yaml: masking.alpha_noise: Input should be less than or equal to 1 (got 1.5)`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from gadms.errors import ConfigError

EXTENDS_KEY = "extends"


class Config(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


C = TypeVar("C", bound=BaseModel)


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Build `cls` from an optional YAML file plus `key.sub=value` overrides, validating everything."""
    source = str(path) if path is not None else "<defaults>"
    data = read_yaml_with_extends(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({_first_line(err)})") from None
        set_dotted(data, key.strip(), value, where=f"override {item!r}")
    if overrides:
        source += " + overrides"
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err, cls)}") from None


def read_yaml_with_extends(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving its `extends:` chain (parent first, child wins)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: `extends` forms a cycle ({chain})")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(err)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    parent = data.pop(EXTENDS_KEY, None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: `extends` must be a file path, got {parent!r}")
    base = read_yaml_with_extends(path.parent / parent, (*_seen, path))
    return deep_merge(base, data)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge mappings; values of `update` win, nested mappings merge key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_dotted(data: dict[str, Any], dotted_key: str, value: Any, where: str = "") -> None:
    """Set `data["a"]["b"]["c"] = value` for `dotted_key="a.b.c"`, creating mappings on the way."""
    *parents, leaf = dotted_key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parents[: i + 1])
            raise ConfigError(f"{where or dotted_key}: {prefix} is a value, not a section")
        node = child
    node[leaf] = value


def to_yaml(config: BaseModel) -> str:
    """The fully resolved config as YAML, to store next to a job's outputs."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def format_validation_error(err: ValidationError, cls: type[BaseModel] | None = None) -> str:
    """One line: `field.path: message (got value)` for each problem, joined with '; '."""
    parts = []
    for problem in err.errors():
        loc = ".".join(str(p) for p in problem["loc"]) or "<top level>"
        msg = problem["msg"]
        if problem["type"] == "extra_forbidden":
            known = _known_fields(cls, problem["loc"][:-1])
            msg = "unknown field" + (f" (known: {', '.join(known)})" if known else "")
        elif "input" in problem and problem["type"] != "missing":
            msg += f" (got {problem['input']!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _known_fields(cls: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the nested model at `loc` inside `cls`, for 'unknown field' messages."""
    for part in loc:
        if cls is None:
            return []
        field = cls.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return sorted(cls.model_fields) if cls is not None else []


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())
