"""The worker side of the worker ↔ manager protocol (docs/architecture.md).

A worker runs one digi's driver without Kubernetes credentials: it reads its
model and writes it through the manager (`HttpModelClient`), and receives its
model's events over a WebSocket (`serve`), feeding each to the engine in
order. `python -m digi.worker` runs the driver module (`handler.py`) of the
working directory; the driver ends with `digi.run()`, which builds an engine
around `client_from_env()` and calls `serve(engine)`.
"""

from digi.worker.client import HttpModelClient, WorkerEnv, client_from_env
from digi.worker.loop import serve

__all__ = ["HttpModelClient", "WorkerEnv", "client_from_env", "serve"]
