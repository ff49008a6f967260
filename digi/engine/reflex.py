"""Reflexes: handlers installed at run time from the model's own `reflex` map (spec §4.6).

`compile_reflexes(reflex_map, coded)` turns `reflex.<name>: {policy, processor,
priority}` into the handler list the engine runs: a reflex with a `policy`
becomes a handler on the whole model (replacing coded handlers of the same
name); a reflex with only a `priority` re-prioritises the coded handlers of
that name. Problems (bad jq, unknown or disabled processor) are returned as
messages, not raised, so a bad reflex cannot stop the driver's coded handlers.

Processors: `jq` (default) runs the policy as a jq program from the model to
the model, with `$time` bound to the current Unix time. `py` executes Python
taken from the model, so it is refused unless the worker's environment has
`DIGI_ALLOW_PY_REFLEX=1`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jq

from digi.engine.handlers import Handler
from digi.errors import DigiError
from digi.filter import always

PY_OPT_IN = "DIGI_ALLOW_PY_REFLEX"
DEFAULT_PROCESSOR = "jq"


class ReflexError(DigiError):
    """A reflex policy failed at run time (e.g. jq produced something that is not a model)."""


def jq_policy(policy: str) -> Callable[..., None]:
    """A handler body applying the jq program `policy` to the model in place."""
    # Compiled here only so a syntax error surfaces at install time; `$time` is bound per run.
    jq.compile(policy, args={"time": 0})

    def run(proc_view: dict[str, Any]) -> None:
        result = jq.compile(policy, args={"time": time.time()}).input_value(proc_view).first()
        if not isinstance(result, dict):
            raise ReflexError(f"jq policy must produce the model (an object), got {type(result).__name__}")
        proc_view.clear()
        proc_view.update(result)

    return run


def py_policy(policy: str) -> Callable[..., None]:
    code = compile(policy, "<reflex>", "exec")

    def run(proc_view: dict[str, Any]) -> None:
        exec(code, {"proc_view": proc_view, "pv": proc_view, "model": proc_view})

    return run


@dataclass
class Compiled:
    handlers: list[Handler]
    errors: list[str]


def _body(name: str, spec: Mapping[str, Any]) -> Callable[..., None]:
    processor = spec.get("processor") or DEFAULT_PROCESSOR
    policy = spec["policy"]
    if not isinstance(policy, str):
        raise DigiError(f"reflex.{name}.policy must be a string")
    if processor == "jq":
        try:
            return jq_policy(policy)
        except ValueError as e:
            raise DigiError(f"reflex.{name}: jq policy does not compile: {e}") from e
    if processor == "py":
        if os.environ.get(PY_OPT_IN) != "1":
            raise DigiError(f"reflex.{name}: the py processor runs code from the model and is off; "
                            f"set {PY_OPT_IN}=1 in the worker's environment to allow it, or use processor: jq")
        try:
            return py_policy(policy)
        except SyntaxError as e:
            raise DigiError(f"reflex.{name}: py policy does not compile: {e}") from e
    raise DigiError(f"reflex.{name}: unknown processor {processor!r}; use jq (or py, when enabled)")


def compile_reflexes(reflexes: Mapping[str, Any], coded: list[Handler]) -> Compiled:
    """The handler list for `coded` handlers under the `reflexes` of the model (unordered)."""
    errors: list[str] = []
    replaced: set[str] = set()
    priorities: dict[str, float] = {}
    installed: list[Handler] = []
    coded_names = {h.name for h in coded}
    for name, spec in reflexes.items():
        if not isinstance(spec, Mapping):
            errors.append(f"reflex.{name} must be an object with policy, processor, priority")
            continue
        priority = spec.get("priority", 0)
        if not isinstance(priority, int | float) or isinstance(priority, bool):
            errors.append(f"reflex.{name}.priority must be a number")
            continue
        if spec.get("policy") is None:
            if name not in coded_names:
                errors.append(f"reflex.{name} has no policy and names no handler of this driver")
            priorities[name] = priority
            continue
        try:
            body = _body(name, spec)
        except DigiError as e:
            errors.append(str(e))
            continue
        replaced.add(name)
        installed.append(Handler(fn=body, name=name, path=(), priority=priority, condition=always,
                                 binding=(("proc_view", "proc_view"),), reflex=True))
    handlers = [
        h.with_priority(priorities[h.name]) if h.name in priorities else h
        for h in coded if h.name not in replaced
    ]
    return Compiled(handlers=handlers + installed, errors=errors)
