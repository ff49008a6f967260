"""Digi driver library: `import digi` in a driver written for the original project.

The names are the original's (spec §4.4): `digi.on` decorators, `digi.run()`,
`digi.logger`, the digi's identity from the worker environment
(`digi.name/namespace/group/version/kind/plural`, with the short aliases
`n/ns/g/v/r`), `digi.model`, `digi.rc`, `digi.util`, `digi.view`,
`digi.filter`, `digi.dbox`, and `digi.pool` (imported on first use: it needs
the lake client). The engine that runs the handlers is `digi.engine`; the
transport that feeds it is `digi.worker`.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

logger = logging.getLogger(os.environ.get("LOGGER_NAME", "digi"))
log_level = os.environ.get("LOGLEVEL", "INFO")

g = group = os.environ.get("GROUP", "digi.dev")
v = version = os.environ.get("VERSION", "v1")
k = kind = os.environ.get("KIND", "")
r = plural = resource = os.environ.get("PLURAL", "")
n = name = os.environ.get("NAME", "")
ns = namespace = os.environ.get("NAMESPACE", "default")
auri = duri = (g, v, r, n, ns)

from digi import dbox, filter, model, on, rc, util, view  # noqa: E402  (modules read the identity above)


def run() -> None:
    """Serve this driver: receive the digi's model events from the manager until the digi is gone."""
    from digi.engine import Engine, default_registry
    from digi.worker import client_from_env, serve

    serve(Engine(default_registry, client_from_env(), name=f"{namespace}/{name}"))


def __getattr__(attr: str) -> ModuleType:
    if attr == "pool":
        return importlib.import_module("digi.pool")
    raise AttributeError(f"module 'digi' has no attribute {attr!r}")


__all__ = [
    "dbox", "filter", "g", "group", "k", "kind", "logger", "model", "n", "name", "namespace", "ns",
    "on", "plural", "pool", "r", "rc", "run", "util", "v", "version", "view",
]
