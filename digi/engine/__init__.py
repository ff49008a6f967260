"""The driver engine: handler registry, reconcile cycle, reflexes (spec §4).

`Engine(registry, client)` runs the handlers of `registry` (by default
`default_registry`, filled by `digi.on`) for one digi; the transport feeds it
with `Engine.handle(obj, old)` and gives it a `ModelClient` to write through.
`MemoryModelClient` is an in-process ModelClient with the API server's
resourceVersion/409 behaviour.
"""

from digi.engine.diff import DiffEntry, diff
from digi.engine.engine import Engine, ModelClient
from digi.engine.handlers import Handler, Registry, default_registry
from digi.engine.memory import MemoryModelClient

__all__ = [
    "DiffEntry",
    "Engine",
    "Handler",
    "MemoryModelClient",
    "ModelClient",
    "Registry",
    "default_registry",
    "diff",
]
