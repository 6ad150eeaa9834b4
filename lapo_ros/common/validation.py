"""The one idiom every dataclass config uses to refuse bad values and unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def check_fields(owner: str, config: Any, checks: Mapping[str, bool],
                 error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``owner`` and every field whose check is False, with its value."""
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        shown = ", ".join(f"{name}={getattr(config, name)!r}" for name in bad)
        raise error(f"{owner}: invalid {shown}")


def unknown_keys(cls: type, keys: Any, owner: str,
                 error: type[Exception] = TypeError) -> None:
    """Raise ``error`` naming ``owner``, the keys that are not fields of ``cls`` and the
    fields it has."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise error(f"{owner}: unknown option(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}")
