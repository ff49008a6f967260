"""Model diffs in the original's (kopf's) shape: `(op, path, old, new)` tuples.

`op` is `add`, `change` or `remove`; `path` is a tuple of keys starting at
the object's top level, so for a digi it starts with `"spec"` — handlers and
filters written for the original index diffs that way. Lists are compared as
whole values, like kopf does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DiffEntry = tuple[str, tuple[str, ...], Any, Any]


def diff(old: Any, new: Any, prefix: tuple[str, ...] = ()) -> list[DiffEntry]:
    """The entries that turn `old` into `new`, depth first, keys in order."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[DiffEntry] = []
        for key, value in old.items():
            if key not in new:
                out.append(("remove", (*prefix, key), value, None))
        for key, value in new.items():
            if key not in old:
                out.append(("add", (*prefix, key), None, value))
            else:
                out.extend(diff(old[key], value, (*prefix, key)))
        return out
    if old == new:
        return []
    return [("change", prefix, old, new)]


def spec_diff(old_spec: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> list[DiffEntry]:
    """Diff of two models with paths rooted at `spec`; no previous model means an empty diff."""
    if old_spec is None:
        return []
    return diff({"spec": old_spec}, {"spec": spec})


_UPWARD_KEYS = ("intent", "input")


def _carries_upward_key(value: Any) -> bool:
    return isinstance(value, Mapping) and any(
        k in _UPWARD_KEYS or _carries_upward_key(v) for k, v in value.items())


def back_prop(entries: list[DiffEntry]) -> list[DiffEntry]:
    """The entries that are intent or input changes inside mounted children (spec §4.2).

    An entry counts if its path goes through an `intent`/`input` key or, when a
    whole subtree was added or replaced, if that subtree holds one.
    """
    return [
        e for e in entries
        if e[0] in ("add", "change") and len(e[1]) >= 3 and e[1][:2] == ("spec", "mount")
        and (any(k in _UPWARD_KEYS for k in e[1]) or _carries_upward_key(e[3]))
    ]
