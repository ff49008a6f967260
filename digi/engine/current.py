"""Which engine `digi.rc` / `digi.model` / `digi.util.*_spec` talk to.

While `Engine.handle` runs, the engine handling the event is current (a
context variable, so a shared worker hosting several digis answers each
handler with its own model). Outside a cycle — loader threads, module-level
code — the most recently created engine is current, which is the only one in
a one-digi-per-process worker.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

from digi.errors import DigiError

if TYPE_CHECKING:
    from digi.engine.engine import Engine

_active: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("digi_engine", default=None)
_latest: list[Engine] = []


def set_latest(engine: Engine) -> None:
    _latest[:] = [engine]


def current_engine() -> Engine:
    engine = _active.get() or (_latest[0] if _latest else None)
    if engine is None:
        raise DigiError("no driver engine is running in this process: call digi.run() "
                        "(or run the driver with `python -m digi.worker`) before using digi.model/digi.rc")
    return engine


def current_engine_or_none() -> Engine | None:
    return _active.get() or (_latest[0] if _latest else None)


@contextlib.contextmanager
def active(engine: Engine) -> Iterator[None]:
    token = _active.set(engine)
    try:
        yield
    finally:
        _active.reset(token)
