"""The one idiom every dataclass config uses to refuse unknown keys, wrong types and bad
values, each error naming where the setting came from and the key."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | os.PathLike, what: str,
                      error: type[Exception] = ValueError) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` ({} when it is empty); ``error`` names the file
    and says what is wrong with it, ``what`` saying what the file is (e.g. "labels file")."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as problem:
        raise error(f"{path}: cannot read the {what} ({problem.strerror})") from None
    except yaml.YAMLError as problem:
        raise error(f"{path}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: the {what} must be a mapping, got {type(data).__name__}")
    return data


def unknown_keys(cls: type, keys: Any, owner: str,
                 error: type[Exception] = TypeError) -> None:
    """Raise ``error`` naming ``owner``, the keys that are not fields of ``cls`` and the
    fields it has."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise error(f"{owner}: unknown option(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}")


def typed_value(cls: type, name: str, value: Any, where: str,
                error: type[Exception] = TypeError) -> Any:
    """``value`` as field ``name`` of dataclass ``cls`` declares it (bool, int, float, str,
    ``X | None``, lists and tuples of those; ints are accepted for floats), or ``error``
    saying ``where must be <type>, got <value>``."""
    hint = typing.get_type_hints(cls)[name]
    try:
        return _as(hint, value)
    except (TypeError, ValueError):
        raise error(f"{where} must be {_type_name(hint)}, got {value!r}") from None


def check_fields(owner: str, config: Any, checks: Mapping[str, bool | tuple[bool, str]],
                 error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``owner`` and every field whose check failed: a check is a
    bool (reported as ``invalid name=value``) or (ok, rule) (reported as ``name rule``)."""
    problems = []
    for name, check in checks.items():
        ok, rule = check if isinstance(check, tuple) else (check, None)
        if not ok:
            problems.append(f"{name} {rule}" if rule else
                            f"invalid {name}={_attribute(config, name)!r}")
    if problems:
        raise error(f"{owner}: {'; '.join(problems)}")


def _attribute(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _as(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _as(option, value)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint in (int, float):
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                hint is float or float(value).is_integer()):
            return hint(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple) and isinstance(value, list | tuple):
        items = [_as(args[0], item) for item in value]
        return items if origin is list else tuple(items)
    elif origin is dict and isinstance(value, dict):
        return value
    raise TypeError


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
