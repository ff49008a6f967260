"""Handler registrations: what `digi.on.*` records, and how arguments are bound (spec §4.1-4.2).

Data flow: a decorator calls `Registry.add(fn, path, prio, cond)`; `add`
inspects `fn`'s signature once and stores a `Handler` with its argument
binding (parameter name -> canonical argument). At run time the engine builds
one dict of canonical arguments per handler and `Handler.call` passes each
parameter what it asked for, by name, alias or position.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from digi.errors import DigiError
from digi.filter import changed

Condition = Callable[..., bool]

# Canonical argument -> the parameter names that ask for it.
ALIASES: dict[str, tuple[str, ...]] = {
    "subview": ("subview", "sub_view", "sv"),
    "proc_view": ("proc_view", "pv", "cur", "parent", "root", "model"),
    "view": ("view", "v"),
    "old_view": ("old_view", "ov", "o"),
    "mount": ("mount", "mounts", "mt", "mts", "child", "children"),
    "obs": ("obs",),
    "meta": ("meta",),
    "diff": ("diff",),
    "back_prop": ("back_prop", "bp"),
    "typ": ("typ", "child_typ"),
}
BY_NAME = {alias: canonical for canonical, names in ALIASES.items() for alias in names}
# What an unrecognised parameter gets, by its position in the signature.
POSITIONAL = ("subview", "proc_view", "view", "old_view", "mount", "obs", "back_prop", "diff", "meta")

_order = itertools.count()


def bind(fn: Callable[..., Any]) -> tuple[tuple[str, str], ...]:
    """(parameter, canonical argument) pairs for `fn`; raises if a required parameter cannot be bound.

    A parameter is bound by its name (or alias); otherwise, if it has no
    default, by its position. Parameters with defaults keep them.
    """
    binding: list[tuple[str, str]] = []
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for index, param in enumerate(params):
        canonical = BY_NAME.get(param.name)
        if canonical is None and param.default is param.empty and param.kind != param.KEYWORD_ONLY \
                and index < len(POSITIONAL):
            canonical = POSITIONAL[index]
        if canonical is not None:
            binding.append((param.name, canonical))
        elif param.default is param.empty:
            raise DigiError(
                f"handler {fn.__qualname__}: parameter {param.name!r} is not a known argument. "
                f"Fix: name it one of {', '.join(sorted(BY_NAME))}, or give it a default")
    return tuple(binding)


@dataclass(eq=False)
class Handler:
    """One registration of a handler function on one path."""

    fn: Callable[..., Any]
    name: str
    path: tuple[str, ...]
    priority: float = 0
    condition: Condition = changed
    binding: tuple[tuple[str, str], ...] = ()
    child_typ: str | None = None
    reflex: bool = False
    order: int = field(default_factory=lambda: next(_order))

    def call(self, args: Mapping[str, Any]) -> None:
        self.fn(**{param: args[canonical] for param, canonical in self.binding})

    def with_priority(self, priority: float) -> Handler:
        return replace(self, priority=priority)

    def holds(self, proc_view: Any, diff: Any) -> bool:
        """Evaluate the condition, passing as many of (proc_view, diff, path) as it accepts."""
        args = (proc_view, diff, self.path)
        try:
            sig = inspect.signature(self.condition)
        except (TypeError, ValueError):
            return bool(self.condition(*args))
        positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
            return bool(self.condition(*args))
        return bool(self.condition(*args[: len(positional)]))


def parse_path(section: str, sub: str | None, group: str, version: str) -> tuple[tuple[str, ...], str | None]:
    """A decorator's section and sub-path -> (model path, child kind for mount handlers).

    `mount` sub-paths start with a child kind, `group/version/plural` or just a
    plural in the digi's own group/version, optionally followed by `.attr...`
    (e.g. `.default/l1.control` for one child's control).
    """
    if section == ".":
        return (tuple(sub.split(".")) if sub and sub != "." else ()), None
    if not sub:
        return (section,), None
    if section != "mount":
        return (section, *sub.split(".")), None
    segments = sub.split("/", 2)
    if len(segments) == 1:
        plural, *rest = sub.split(".")
        typ = f"{group}/{version}/{plural}"
    elif len(segments) == 3:
        plural, *rest = segments[2].split(".")
        typ = f"{segments[0]}/{segments[1]}/{plural}"
    else:
        raise DigiError(f"@on.mount({sub!r}): expected a child kind as group/version/plural "
                        "or a plural, e.g. @on.mount('mock.digi.dev/v1/lamps')")
    return ("mount", typ, *rest), typ


class Registry:
    """The handlers a driver module registered, in registration order."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def add(self, fn: Callable[..., Any], path: tuple[str, ...], priority: float = 0,
            condition: Condition | None = None, child_typ: str | None = None) -> Handler:
        handler = Handler(fn=fn, name=getattr(fn, "__name__", repr(fn)), path=path, priority=priority,
                          condition=condition or changed, binding=bind(fn), child_typ=child_typ)
        self._handlers.append(handler)
        return handler

    def handlers(self) -> list[Handler]:
        return list(self._handlers)

    def clear(self) -> None:
        self._handlers.clear()


default_registry = Registry()
