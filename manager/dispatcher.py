"""The dispatcher: starts a worker per digi and streams each digi's events to it.

Two paths, both fed by `cache.on_digi_event`:

- lifecycle: every digi event enqueues the digi's key on the `dispatcher`
  controller, whose reconcile asks the worker backend to `ensure` a worker
  (digi exists) or `remove` it (digi gone). Being a controller, it only runs
  on the leader.
- events: if the digi's worker is connected (a `Session`, one per digi), the
  event is pushed to it as `{"type": "MODEL", "object", "old"}` where `old` is
  the last model sent to that digi; unchanged resourceVersions (informer
  resyncs) are not re-sent. On (re)connect the session's first message is the
  current model (a resync). Pushes happen on the informer thread under one
  lock, so a digi's messages leave in watch order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from manager import metrics
from manager.cache import Cache
from manager.controller import Controller, Result
from manager.informer import DELETED
from manager.server.tokens import TokenIssuer
from manager.types import ObjectKey
from manager.workers.base import (
    DRIVER_DIR_ANNOTATION,
    IMAGE_ANNOTATION,
    Backend,
    WorkerSpec,
    annotation,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# WebSocket close codes (4000-4999 are the application's).
CLOSE_GONE, CLOSE_REPLACED = 4404, 4409


@dataclass
class Message:
    object: JSON | None
    old: JSON | None = None
    received: float | None = None  # monotonic time the watch event arrived
    close_code: int = 0
    close_reason: str = ""


class Session:
    """One worker connection; messages are pushed from any thread, read on the HTTP loop."""

    def __init__(self, key: ObjectKey, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.queue: asyncio.Queue[Message] = asyncio.Queue()

    def push(self, message: Message) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)


class Dispatcher:
    def __init__(self, cache: Cache, backend: Backend, tokens: TokenIssuer, *,
                 manager_url: str, lake_url: str, workers: int = 2) -> None:
        self.cache = cache
        self.backend = backend
        self.tokens = tokens
        self.manager_url = manager_url
        self.lake_url = lake_url
        self.controller = Controller("dispatcher", self.reconcile, workers=workers)
        self._sessions: dict[ObjectKey, Session] = {}
        self._last_sent: dict[ObjectKey, JSON] = {}
        self._lock = threading.Lock()
        cache.on_digi_event(self._on_event)
        metrics.register_workers(lambda: Counter(self.backend.states().values()))
        metrics.register_digis(cache.count_digis)

    # -- event path ----------------------------------------------------------------
    def _on_event(self, event_type: str, obj: JSON, _old: JSON | None) -> None:
        received = time.monotonic()
        gvr = self.cache.gvr_of(obj)
        if gvr is None:
            return
        key = ObjectKey.of(gvr, obj)
        with self._lock:
            if event_type == DELETED:
                self._last_sent.pop(key, None)
                session = self._sessions.pop(key, None)
                if session is not None:
                    session.push(Message(None, close_code=CLOSE_GONE, close_reason="digi deleted"))
            elif (session := self._sessions.get(key)) is not None:
                last = self._last_sent.get(key)
                if last is None or last["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    session.push(Message(obj, last, received))
                    self._last_sent[key] = obj
        self.controller.enqueue(key)

    def resolve(self, namespace: str, name: str, gvr: str | None = None) -> ObjectKey | None:
        """The key of digi namespace/name (`gvr` disambiguates kinds sharing a name)."""
        found = self.cache.find_digi(namespace, name)
        if gvr is not None:
            found = [(g, o) for g, o in found if str(g) == gvr]
        return ObjectKey(found[0][0], namespace, name) if len(found) == 1 else None

    def attach(self, key: ObjectKey, loop: asyncio.AbstractEventLoop) -> Session | None:
        """A new connection for `key`, primed with the resync message; None if the digi is gone.
        An older connection of the same digi is closed: the newest worker wins."""
        informer = self.cache.informer(key.gvr)
        # Lock order is informer, then dispatcher (as on the event path): no event
        # can slip between reading the model and registering the session.
        with informer.lock, self._lock:
            obj = informer.get(key.namespace, key.name)
            if obj is None:
                return None
            previous = self._sessions.get(key)
            if previous is not None:
                previous.push(Message(None, close_code=CLOSE_REPLACED, close_reason="a newer connection took over"))
            session = Session(key, loop)
            self._sessions[key] = session
            session.push(Message(obj, self._last_sent.get(key)))
            self._last_sent[key] = obj
            return session

    def detach(self, session: Session) -> None:
        with self._lock:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]

    def identify(self, token: str) -> str:
        """Which digi a token belongs to, for the log line of a refused request."""
        for gvr in self.cache.digi_kinds():
            for obj in self.cache.list(gvr):
                meta = obj["metadata"]
                if self.tokens.verify(token, meta.get("namespace", ""), meta["name"]):
                    return f"{meta.get('namespace')}/{meta['name']}"
        return "an unknown worker"

    # -- lifecycle path --------------------------------------------------------------
    def worker_spec(self, key: ObjectKey, obj: JSON) -> WorkerSpec:
        crd = self.cache.crd(key.gvr)
        kind = obj.get("kind") or self.cache.kind_of(key.gvr)
        env = {
            "DIGI_MANAGER_URL": self.manager_url, "DIGI_TOKEN": self.tokens.token(key.namespace, key.name),
            "GROUP": key.gvr.group, "VERSION": key.gvr.version, "PLURAL": key.gvr.plural, "KIND": kind,
            "NAME": key.name, "NAMESPACE": key.namespace, "DIGI_LAKE_URL": self.lake_url,
        }
        return WorkerSpec(
            key=key, kind=kind, env=env, uid=obj["metadata"].get("uid", ""), obj=obj,
            driver_dir=annotation(DRIVER_DIR_ANNOTATION, obj, crd),
            image=annotation(IMAGE_ANNOTATION, obj, crd),
        )

    def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.cache.get(key.gvr, key.namespace, key.name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self.backend.remove(key)
            return None
        self.backend.ensure(self.worker_spec(key, obj))
        return None
