"""Handler decorators: `@on.control`, `@on.meta("gen_interval", prio=1)`, `@on.mount("lamps", cond=f)`...

Each decorator registers the function into `digi.engine.default_registry` and
returns it unchanged, so decorators stack. Bare use subscribes to the whole
section; a first positional argument (or `path=`) names a sub-path. `prio`
orders handlers (ascending; negative disables), `cond` replaces the default
condition `digi.filter.changed` (spec §4.1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from digi.engine.diff import DiffEntry
from digi.engine.handlers import Condition, default_registry, parse_path

F = TypeVar("F", bound=Callable[..., Any])


def _register(fn: Callable[..., Any], section: str, sub: str | None, prio: float, cond: Condition | None) -> None:
    path, child_typ = parse_path(section, sub, os.environ.get("GROUP", "digi.dev"),
                                 os.environ.get("VERSION", "v1"))
    default_registry.add(fn, path, priority=prio, condition=cond, child_typ=child_typ)


def _section(section: str) -> Callable[..., Any]:
    def decorator(*args: Any, path: str | None = None, prio: float = 0,
                  cond: Condition | None = None) -> Any:
        if args and callable(args[0]):
            _register(args[0], section, path, prio, cond)
            return args[0]
        sub = args[0] if args else path

        def wrap(fn: F) -> F:
            _register(fn, section, sub, prio, cond)
            return fn

        return wrap

    decorator.__name__ = section if section != "." else "model"
    decorator.__doc__ = f"Run the handler when `{section}` (or the given sub-path of it) changes."
    return decorator


control = _section("control")
meta = _section("meta")
obs = _section("obs")
data = _section("data")
mount = _section("mount")
ingress = _section("ingress")
egress = _section("egress")
model = _section(".")
attr = model


def mount_change(diff: Iterable[DiffEntry], gvr: str | None = None) -> bool:
    """Whether the diff mounts a new child (of kind `gvr`, if given) or unmounts one."""
    for op, path, _, _ in diff:
        if op == "remove" and len(path) == 4 and path[:2] == ("spec", "mount"):
            return True
        if op == "add" and path[:2] == ("spec", "mount") and (gvr is None or path[2:3] == (gvr,)) \
                and (len(path) <= 4 or path[-1] == "generation"):
            return True
    return False
