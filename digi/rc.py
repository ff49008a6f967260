"""`digi.rc`: the running reconciler, as drivers of the original reach it.

`view()` is the latest model the engine saw or wrote (a copy; `{}` before the
first event), `do_not_skip()` makes the engine process the event its current
write causes instead of skipping it. Both act on the current engine
(`digi.engine.current`).
"""

from __future__ import annotations

from typing import Any

from digi.engine.current import current_engine, current_engine_or_none


def view() -> dict[str, Any]:
    engine = current_engine_or_none()
    return engine.view() if engine is not None else {}


def do_not_skip() -> None:
    current_engine().do_not_skip()
