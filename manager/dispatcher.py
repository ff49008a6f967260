"""The dispatcher: starts a worker per digi (or a shared one per kind) and streams each digi's events to it.

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
- shared workers: a digi of a kind in shared mode (`digi.dev/worker-mode:
  shared` on the CRD, on a backend that supports it) is a member of a pool,
  `PoolKey(namespace, gvr, pool)`. Its reconcile joins it to the pool; its
  removal or deletion leaves. One `Session` per pool multiplexes the members:
  `ASSIGN` (the digi's own token) before its first `MODEL`, `MODEL` with the
  digi's namespace/name, `LEAVE` when it goes. On (re)connect the pool
  session is primed with ASSIGN + a MODEL resync for every member. The pool's
  connection token opens the stream only; every read and write still carries
  the digi's own token. Changing a CRD's worker mode (or driver directory)
  re-reconciles its digis, which moves them between own and shared workers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from manager import metrics
from manager.cache import CRD_GVR, Cache, crd_gvr
from manager.controller import Controller, Result
from manager.informer import DELETED
from manager.server.tokens import TokenIssuer
from manager.types import GVR, ObjectKey
from manager.workers.base import (
    DRIVER_DIR_ANNOTATION,
    IMAGE_ANNOTATION,
    SHARED_MODE,
    WORKER_MODE_ANNOTATION,
    Backend,
    WorkerSpec,
    annotation,
    pool_id,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# WebSocket close codes (4000-4999 are the application's).
CLOSE_GONE, CLOSE_REPLACED = 4404, 4409


MODEL, ASSIGN, LEAVE = "MODEL", "ASSIGN", "LEAVE"


class PoolKey(NamedTuple):
    namespace: str
    gvr: GVR
    pool: str


@dataclass
class Message:
    object: JSON | None
    old: JSON | None = None
    received: float | None = None  # monotonic time the watch event arrived
    close_code: int = 0
    close_reason: str = ""
    type: str = MODEL
    digi: ObjectKey | None = None  # on a pool's stream: which member
    token: str = ""  # ASSIGN: the member's own token

    def wire(self) -> JSON:
        """The JSON sent to the worker."""
        if self.digi is None:
            return {"type": MODEL, "object": self.object, "old": self.old}
        body: JSON = {"type": self.type, "namespace": self.digi.namespace, "name": self.digi.name}
        if self.type == MODEL:
            body.update(object=self.object, old=self.old)
        elif self.type == ASSIGN:
            body["token"] = self.token
        return body


@dataclass
class _Pool:
    members: set[ObjectKey]
    session: Session | None = None


class Session:
    """One worker connection; messages are pushed from any thread, read on the HTTP loop."""

    def __init__(self, key: ObjectKey | PoolKey, loop: asyncio.AbstractEventLoop) -> None:
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
        self._pools: dict[PoolKey, _Pool] = {}
        self._pool_of: dict[ObjectKey, PoolKey] = {}
        self._lock = threading.Lock()
        cache.on_digi_event(self._on_event)
        cache.informer(CRD_GVR).add_handler(self._on_crd)
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
                self._leave_locked(key)
                self._last_sent.pop(key, None)
                session = self._sessions.pop(key, None)
                if session is not None:
                    session.push(Message(None, close_code=CLOSE_GONE, close_reason="digi deleted"))
            elif (session := self._session_of(key)) is not None:
                last = self._last_sent.get(key)
                if last is None or last["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    shared = key if key in self._pool_of else None
                    session.push(Message(obj, last, received, digi=shared))
                    self._last_sent[key] = obj
        self.controller.enqueue(key)

    def _on_crd(self, _event_type: str, crd: JSON, old: JSON | None) -> None:
        gvr = crd_gvr(crd)
        if old is None or old is crd or gvr is None:
            return
        if all(annotation(a, crd) == annotation(a, old) for a in (WORKER_MODE_ANNOTATION, DRIVER_DIR_ANNOTATION)):
            return
        for obj in self.cache.list(gvr):
            self.controller.enqueue(ObjectKey.of(gvr, obj))

    def _session_of(self, key: ObjectKey) -> Session | None:
        pool = self._pool_of.get(key)
        return self._pools[pool].session if pool is not None else self._sessions.get(key)

    def is_digi(self, key: ObjectKey) -> bool:
        """Whether `key` is a digi this manager knows (its kind is a digi kind and the object exists)."""
        # The kind is checked first: `cache.get` would start an informer for any GVR.
        return key.gvr in self.cache.digi_kinds() and self.cache.get(*key) is not None

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
            if isinstance(session.key, PoolKey):
                pool = self._pools.get(session.key)
                if pool is not None and pool.session is session:
                    pool.session = None
                    if not pool.members:
                        del self._pools[session.key]
            elif self._sessions.get(session.key) is session:
                del self._sessions[session.key]

    # -- shared workers ----------------------------------------------------------------
    def attach_pool(self, key: PoolKey, loop: asyncio.AbstractEventLoop) -> Session:
        """A new connection for pool `key`, primed with ASSIGN + MODEL for every member (a per-digi resync).
        A pool with no members yet is fine: members join as the dispatcher reconciles them."""
        informer = self.cache.informer(key.gvr)
        with informer.lock, self._lock:
            pool = self._pools.setdefault(key, _Pool(set()))
            if pool.session is not None:
                pool.session.push(Message(None, close_code=CLOSE_REPLACED,
                                          close_reason="a newer connection of this shared worker took over"))
            pool.session = session = Session(key, loop)
            for member in sorted(pool.members):
                obj = informer.get(member.namespace, member.name)
                if obj is not None:
                    self._assign_locked(session, member, obj)
            return session

    def _assign_locked(self, session: Session, key: ObjectKey, obj: JSON) -> None:
        session.push(Message(None, type=ASSIGN, digi=key, token=self.tokens.token(key)))
        session.push(Message(obj, self._last_sent.get(key), digi=key))
        self._last_sent[key] = obj

    def _join(self, key: ObjectKey, pool_key: PoolKey) -> None:
        informer = self.cache.informer(key.gvr)
        with informer.lock, self._lock:
            if self._pool_of.get(key) == pool_key:
                return
            self._leave_locked(key)
            old_session = self._sessions.pop(key, None)
            if old_session is not None:
                old_session.push(Message(None, close_code=CLOSE_REPLACED, close_reason="the digi moved to a shared worker"))
            pool = self._pools.setdefault(pool_key, _Pool(set()))
            pool.members.add(key)
            self._pool_of[key] = pool_key
            obj = informer.get(key.namespace, key.name)
            if pool.session is not None and obj is not None:
                self._assign_locked(pool.session, key, obj)

    def _leave(self, key: ObjectKey) -> None:
        with self._lock:
            self._leave_locked(key)

    def _leave_locked(self, key: ObjectKey) -> None:
        pool_key = self._pool_of.pop(key, None)
        if pool_key is None:
            return
        pool = self._pools[pool_key]
        pool.members.discard(key)
        if pool.session is not None:
            pool.session.push(Message(None, type=LEAVE, digi=key))
        if not pool.members and pool.session is None:
            del self._pools[pool_key]

    def identify(self, token: str) -> str:
        """Which digi's worker a token belongs to, for the log line of a refused request."""
        for gvr in self.cache.digi_kinds():
            for obj in self.cache.list(gvr):
                key = ObjectKey.of(gvr, obj)
                if self.tokens.verify(token, key):
                    return f"the worker of {gvr} {key.namespace}/{key.name}"
        return "an unknown worker"

    # -- lifecycle path --------------------------------------------------------------
    def worker_spec(self, key: ObjectKey, obj: JSON) -> WorkerSpec:
        crd = self.cache.crd(key.gvr)
        kind = obj.get("kind") or self.cache.kind_of(key.gvr)
        driver_dir = annotation(DRIVER_DIR_ANNOTATION, obj, crd)
        pool = ""
        if driver_dir and self.backend.shared_workers and annotation(WORKER_MODE_ANNOTATION, crd) == SHARED_MODE:
            pool = pool_id(driver_dir)
        env = {
            "DIGI_MANAGER_URL": self.manager_url, "GROUP": key.gvr.group, "VERSION": key.gvr.version,
            "PLURAL": key.gvr.plural, "KIND": kind, "NAMESPACE": key.namespace, "DIGI_LAKE_URL": self.lake_url,
        }
        if pool:
            # The process is the pool's: it gets the pool's token and each digi's over the stream.
            env.update(DIGI_WORKER_POOL=pool, DIGI_TOKEN=self.tokens.pool_token(key.namespace, key.gvr, pool))
        else:
            env.update(NAME=key.name, DIGI_TOKEN=self.tokens.token(key))
        return WorkerSpec(
            key=key, kind=kind, env=env, uid=obj["metadata"].get("uid", ""), obj=obj, pool=pool,
            driver_dir=driver_dir, image=annotation(IMAGE_ANNOTATION, obj, crd),
        )

    def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.cache.get(key.gvr, key.namespace, key.name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self._leave(key)
            self.backend.remove(key)
            return None
        spec = self.worker_spec(key, obj)
        if spec.pool:
            self._join(key, PoolKey(key.namespace, key.gvr, spec.pool))
        else:
            self._leave(key)
        self.backend.ensure(spec)
        return None
