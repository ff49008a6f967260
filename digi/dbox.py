"""Digibox helpers for mocks and scenes (spec §8).

- `managed`: a condition (`cond=dbox.managed`) that holds off a mock's own
  handlers while a scene manages it (`meta.managed: true`), but still fires
  when `managed` itself flips;
- `manage(mounts)`: what a scene does to every mock it mounts;
- `@dbox.loop`: run the function every `meta.gen_interval` seconds (-1 or
  managed pauses it), restarted whenever `meta` changes;
- `meta.seed` seeds Python's `random` (and `dbox.random`) whenever it
  changes, so a scene and its mocks replay the same events.

Not here: `attach` is the mount verb (`digi mount`); `replay` of recorded
traces is not implemented.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from digi import filter, on, util
from digi.engine.diff import DiffEntry

F = TypeVar("F", bound=Callable[..., Any])

random = _random.Random()
_loops: dict[str, util.Loop] = {}
_seeded: list[Any] = [None]


def managed(proc_view: Mapping[str, Any], diff: Sequence[DiffEntry], *args: Any, **kwargs: Any) -> bool:
    """Condition: run unless a scene manages this mock; a flip of `meta.managed` always runs."""
    if util.get(proc_view, "meta.managed", False):
        return False
    return filter.path_changed(diff, ("meta", "managed")) or filter.changed(proc_view, diff, *args, **kwargs)


def manage(mounts: Mapping[str, Any], skip_gvr: set[str] | None = None) -> None:
    """Mark every mounted mock (except kinds in `skip_gvr`) as managed by the caller."""
    for gvr, mocks in mounts.items():
        if skip_gvr and gvr in skip_gvr:
            continue
        for mock in mocks.values():
            util.update(mock, "spec.meta.managed", True)


def seed(value: Any) -> None:
    """Seed `random` and `dbox.random` (skipped if `value` is what was seeded last)."""
    if value is None or value == _seeded[0]:
        return
    _seeded[0] = value
    _random.seed(value)
    random.seed(value)


def loop(fn: F) -> F:
    """Run `fn` every `meta.gen_interval` seconds unless the digi is managed; returns `fn`."""
    _loops[fn.__name__] = util.Loop(loop_fn=fn)

    def on_meta(meta: dict[str, Any]) -> None:
        seed(meta.get("seed"))
        current = _loops[fn.__name__]
        current.stop()
        interval, is_managed = meta.get("gen_interval", -1), meta.get("managed", False)
        if isinstance(interval, int | float) and interval > 0 and not is_managed:
            current.reset(interval)
            current.start()

    on_meta.__name__ = f"dbox_loop_{fn.__name__}"
    on.meta(on_meta)
    return fn
