"""One shared informer per GVR: a list + watch loop feeding a local store and handlers.

Data flow: `list` (paged) fills the store and yields ADDED/MODIFIED/DELETED
against what was there before; then `watch` from the list's resourceVersion
(with bookmarks, so a restart resumes close to the present) applies each event
to the store and hands `(event_type, obj, old)` to every handler, in order, on
the informer's own thread. A `410 Gone` (the resourceVersion was compacted
away) or any other failure re-lists after a backoff. Every `resync_period` all
objects are re-delivered as `MODIFIED` with `old is obj`, the client-go resync,
so level-based controllers heal missed side effects. A resource that is not
served (404: its CRD is missing, e.g. until the leading manager creates it)
counts as synced and empty, and is listed again every few seconds.

Handlers must be quick (enqueue a key, push to a queue); they run under the
informer's lock, which is what makes a late `add_handler` replay consistent.
"""

from __future__ import annotations

import builtins
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from digi.errors import NotFound
from manager.kube import ApiError, Client, WatchStream
from manager.types import GVR

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Handler = Callable[[str, JSON, JSON | None], None]
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
NOT_SERVED_RETRY = 5.0
"""Most seconds between lists of a resource no CRD serves yet (the leader may be creating it)."""


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return meta.get("namespace", ""), meta["name"]


class Informer:
    def __init__(self, client: Client, gvr: GVR, *, label_selector: str | None = None,
                 resync_period: float = 600.0) -> None:
        self.client = client
        self.gvr = gvr
        self.label_selector = label_selector
        self.resync_period = resync_period
        self._store: dict[tuple[str, str], JSON] = {}
        self._handlers: builtins.list[Handler] = []
        self._lock = threading.RLock()
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._stream: WatchStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"informer {gvr}", daemon=True)
        self._resource_version = ""

    # -- reading -----------------------------------------------------------------
    def get(self, namespace: str | None, name: str) -> JSON | None:
        with self._lock:
            return self._store.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> builtins.list[JSON]:
        with self._lock:
            return [o for (ns, _), o in self._store.items() if namespace is None or ns == namespace]

    @property
    def lock(self) -> threading.RLock:
        """Held while events are applied and handed out; hold it to read the store
        and act atomically with respect to the event stream."""
        return self._lock

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- lifecycle -----------------------------------------------------------------
    def add_handler(self, handler: Handler) -> None:
        """Register `handler`; objects already in the store are replayed to it as ADDED."""
        with self._lock:
            self._handlers.append(handler)
            for obj in list(self._store.values()):
                self._call(handler, ADDED, obj, None)

    def start(self) -> None:
        """Idempotent: a cache may ask an informer to start more than once."""
        with self._lock:
            if not self._thread.is_alive() and not self._stopped.is_set():
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # -- the loop ----------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        next_resync = time.monotonic() + self.resync_period
        need_list = True
        while not self._stopped.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                    backoff = 0.5
                if time.monotonic() >= next_resync:
                    self._resync()
                    next_resync = time.monotonic() + self.resync_period
                self._watch_once(min(self.resync_period, random.uniform(60, 120)))
            except _Gone:
                log.info("informer %s: resourceVersion %s is gone, re-listing", self.gvr, self._resource_version)
                need_list = True
            except _NotServed:
                need_list = True
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, NOT_SERVED_RETRY)
            except Exception as e:  # the informer must outlive any failure; it re-lists
                if self._stopped.is_set():
                    return
                log.warning("informer %s: %s; re-listing in %.1fs", self.gvr, e, backoff)
                need_list = True
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _relist(self) -> None:
        try:
            items, rv = self.client.list_all(self.gvr, label_selector=self.label_selector)
        except NotFound:
            # Nothing serves this resource (yet): its CRD is missing or not established,
            # e.g. until the leader creates it. None of its objects exist, so the store
            # is synced empty (readiness and a new leader do not wait for it) and the
            # informer lists again until the resource is served.
            if self.has_synced and not self._store:
                raise _NotServed() from None
            log.info("informer %s: the resource is not served (no CRD yet?); listing again", self.gvr)
            items, rv = [], ""
        fresh = {_key(o): o for o in items}
        with self._lock:
            for key, gone in list(self._store.items()):
                if key not in fresh:
                    del self._store[key]
                    self._dispatch(DELETED, gone, gone)
            for key, obj in fresh.items():
                old = self._store.get(key)
                self._store[key] = obj
                if old is None:
                    self._dispatch(ADDED, obj, None)
                elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    self._dispatch(MODIFIED, obj, old)
            self._resource_version = rv
        self._synced.set()
        if not rv:
            raise _NotServed()

    def _resync(self) -> None:
        with self._lock:
            for obj in list(self._store.values()):
                self._dispatch(MODIFIED, obj, obj)

    def _watch_once(self, timeout: float) -> None:
        try:
            self._stream = self.client.watch(
                self.gvr, resource_version=self._resource_version, timeout_seconds=max(1, int(timeout)),
                label_selector=self.label_selector,
            )
        except ApiError as e:
            if e.status == 410:
                raise _Gone() from e
            raise
        if self._stopped.is_set():
            self._stream.close()
        for event in self._stream:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone()
                raise ApiError(int(obj.get("code") or 0), f"watch {self.gvr}: {obj.get('message')}", obj)
            rv = obj.get("metadata", {}).get("resourceVersion")
            if kind == "BOOKMARK":
                self._resource_version = rv or self._resource_version
                continue
            with self._lock:
                key = _key(obj)
                old = self._store.get(key)
                if kind == DELETED:
                    self._store.pop(key, None)
                    self._dispatch(DELETED, obj, old)
                else:
                    self._store[key] = obj
                    self._dispatch(ADDED if old is None else MODIFIED, obj, old)
                self._resource_version = rv or self._resource_version

    def _dispatch(self, event_type: str, obj: JSON, old: JSON | None) -> None:
        for handler in self._handlers:
            self._call(handler, event_type, obj, old)

    def _call(self, handler: Handler, event_type: str, obj: JSON, old: JSON | None) -> None:
        try:
            handler(event_type, obj, old)
        except Exception:
            log.exception("informer %s: handler %r failed on %s %s", self.gvr, handler, event_type,
                          obj.get("metadata", {}).get("name"))


class _Gone(Exception):
    """The watch's resourceVersion is older than the server keeps (HTTP 410)."""


class _NotServed(Exception):
    """The list answered 404: no CRD serves the resource (yet)."""
