"""`serve_shared(registry)`: one process hosting many digis of a kind (a shared worker).

The manager starts it (`python -m digi.worker` with `DIGI_WORKER_POOL` set)
for a kind whose CRD has `digi.dev/worker-mode: shared`. One WebSocket,
`/api/v1/workers/shared?ns=&gvr=&pool=` opened with the pool's token, carries
the events of every digi the manager assigned to this process:

- `ASSIGN {namespace, name, token}`: host the digi; an `Engine` over the
  driver's registry with its own `HttpModelClient` holding *that digi's*
  token (all clients share one `ManagerHttp`). The process never
  holds a token the manager did not send, and every read/write names its
  digi and carries its token, so the manager's per-digi rule (403 for any
  other digi) applies unchanged.
- `MODEL {namespace, name, object, old}`: queued for the digi's engine; the
  MODELs that arrive while an earlier step of that digi is waiting or running
  join one batch (`engine.handle_batch`: one cycle on the newest model), so a
  digi whose intents change faster than its handlers run catches up instead of
  working through a backlog.
- `LEAVE {namespace, name}`: drop the digi's engine.

Messages of one digi run in order and never concurrently (`Lanes`); different
digis run in parallel on several threads (`DIGI_SHARED_THREADS`, default 16), so
one slow handler does not stall the others. On reconnect the manager re-sends
ASSIGN + MODEL for every member (a per-digi resync); an engine that is
re-assigned with the same token is kept, so it still skips its own writes.

Partial: digis that left while the connection was down are not told (no
LEAVE comes); their idle engines stay until the process restarts. Module-level
identity (`digi.name`) is the pool's (empty NAME) — drivers hosted this way
must take the digi's identity from the model, as `bench/kinds/lamp` does —
and `dbox` loops run once per process, not per digi.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from digi.engine import Engine, default_registry
from digi.engine.handlers import Registry
from digi.worker.client import HttpModelClient, WorkerEnv
from digi.worker.http import ManagerHttp
from digi.worker.loop import Event, stream

log = logging.getLogger("digi.worker")

Key = tuple[str, str]  # namespace, name


class Lanes:
    """Runs submitted calls on `threads` threads: in submission order per key, one at a time per key."""

    def __init__(self, threads: int) -> None:
        self._pending: dict[Key, deque[Callable[[], None]]] = {}
        self._ready: queue.SimpleQueue[Key | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"lane {i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Key, fn: Callable[[], None]) -> None:
        with self._lock:
            lane = self._pending.get(key)
            if lane is not None:
                lane.append(fn)
                return
            self._pending[key] = deque([fn])
        self._ready.put(key)

    def _run(self) -> None:
        while (key := self._ready.get()) is not None:
            with self._lock:
                fn = self._pending[key][0]
            try:
                fn()
            except Exception:
                log.exception("digi %s/%s: a worker step failed", *key)
            with self._lock:
                lane = self._pending[key]
                lane.popleft()
                if not lane:
                    del self._pending[key]
                    continue
            self._ready.put(key)

    def close(self) -> None:
        for _ in self._threads:
            self._ready.put(None)


class SharedWorker:
    """The engines of the digis assigned to this process, fed from the multiplexed stream."""

    def __init__(self, registry: Registry, env: WorkerEnv, threads: int = 16) -> None:
        self.registry = registry
        self.env = env
        self.http = ManagerHttp(env.manager_url)
        self.engines: dict[Key, tuple[str, Engine]] = {}  # key -> (token, engine)
        # Per digi, the MODEL events of the batch that has not started yet; a new MODEL joins it.
        self._batches: dict[Key, list[Event]] = {}
        self._lock = threading.Lock()
        self.lanes = Lanes(threads)

    def on_messages(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.on_message(message)

    def on_message(self, message: dict[str, Any]) -> None:
        key = (message["namespace"], message["name"])
        kind = message.get("type")
        if kind == "MODEL":
            event = (message["object"], message.get("old"))
            with self._lock:
                batch = self._batches.get(key)
                if batch is not None:
                    batch.append(event)
                    return
                batch = self._batches[key] = [event]
            self.lanes.submit(key, lambda: self._handle(key, batch))
            return
        with self._lock:
            # A MODEL after this step must not join a batch that runs before it.
            self._batches.pop(key, None)
        if kind == "ASSIGN":
            self.lanes.submit(key, lambda: self._assign(key, message["token"]))
        elif kind == "LEAVE":
            self.lanes.submit(key, lambda: self._leave(key))

    def _assign(self, key: Key, token: str) -> None:
        with self._lock:
            current = self.engines.get(key)
            if current is not None and current[0] == token:
                return
        client = HttpModelClient(self.env.for_digi(key[1], token, key[0]), http=self.http)
        engine = Engine(self.registry, client, name=f"{key[0]}/{key[1]}")
        with self._lock:
            self.engines[key] = (token, engine)
        log.info("hosting digi %s/%s", *key)

    def _handle(self, key: Key, batch: list[Event]) -> None:
        with self._lock:
            if self._batches.get(key) is batch:
                del self._batches[key]  # it starts: later MODELs form the next batch
            events = list(batch)
            current = self.engines.get(key)
        if current is None:
            log.warning("digi %s/%s: an event before its assignment; ignored", *key)
            return
        current[1].handle_batch(events)

    def _leave(self, key: Key) -> None:
        with self._lock:
            self.engines.pop(key, None)
        log.info("no longer hosting digi %s/%s", *key)

    def close(self) -> None:
        self.lanes.close()
        self.http.close()


def shared_url(env: WorkerEnv, pool: str) -> str:
    base = env.manager_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/api/v1/workers/shared?{urlencode({'ns': env.namespace, 'gvr': env.gvr, 'pool': pool})}"


def serve_shared(registry: Registry | None = None, environ: dict[str, str] | None = None,
                 stop: threading.Event | None = None) -> None:
    """Host the pool's digis until the manager replaces this process or `stop` is set."""
    source = os.environ if environ is None else environ
    env = WorkerEnv.from_environ(source, shared=True)
    pool = source["DIGI_WORKER_POOL"]
    worker = SharedWorker(registry or default_registry, env, int(source.get("DIGI_SHARED_THREADS", "16")))
    try:
        stream(shared_url(env, pool), env, worker.on_messages, stop,
               f"shared worker {pool} ({env.kind or env.gvr} in {env.namespace})")
    finally:
        worker.close()
