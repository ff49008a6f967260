"""Handler conditions (`cond=`), with the original's names and call shape.

A condition is called as `cond(proc_view, diff, path)`: the model being
reconciled, the diff entries of this cycle (paths start with `"spec"`), and the
handler's subscribed path (a tuple; `()` for the whole model). `changed` is the
default condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from digi.engine.diff import DiffEntry


def _model_path(entry_path: Sequence[str]) -> tuple[str, ...]:
    """A diff path without its leading `spec`."""
    p = tuple(entry_path)
    return p[1:] if p[:1] == ("spec",) else p


def _related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One path lies inside the other (or they are equal)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _as_path(path: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return () if path in ("", ".") else tuple(path.split("."))
    p = tuple(path)
    return () if p == (".",) else p


def always(*args: Any, **kwargs: Any) -> bool:
    """Run on every cycle."""
    return True


def path_changed(diff: Iterable[DiffEntry], path: str | Iterable[str]) -> bool:
    """Whether the diff touches `path` (a tuple or dotted string, without `spec`), above or below it."""
    target = _as_path(path)
    return any(_related(_model_path(entry[1]), target) for entry in diff)


def changed(proc_view: Any, diff: Sequence[DiffEntry], path: str | Iterable[str] = (), *args: Any,
            **kwargs: Any) -> bool:
    """The default: the handler's subtree changed; an empty diff (a start or a resync) counts as changed.

    Unlike the original, a change *above* the subtree (e.g. the whole `control`
    added at once) also counts, so a handler on `control.power` sees its attribute appear.
    """
    return len(diff) == 0 or path_changed(diff, path)


has_diff = changed
