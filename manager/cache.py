"""The manager's shared cache: one informer per GVR, and the digi kinds.

`Cache.informer(gvr)` returns the single informer for a GVR, starting it on
first use, so however many controllers look at lamps there is one lamp watch.
A CRD informer (label `digi.dev/kind=true`) tracks digi kinds: when such a CRD
is established, an informer for its kind starts and every `on_digi_event`
handler receives its events; when the CRD goes away the informer stops and its
digis are delivered as DELETED. Kinds added while the manager runs work the
same way as kinds present at start.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from manager.informer import DELETED, Handler, Informer
from manager.kube import Client
from manager.types import GVR

log = logging.getLogger(__name__)

JSON = dict[str, Any]
CRD_GVR = GVR("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DIGI_KIND_LABEL = "digi.dev/kind"


def crd_gvr(crd: JSON) -> GVR | None:
    """The GVR a CRD serves (its storage version), or None while it is not established."""
    conditions = crd.get("status", {}).get("conditions") or []
    if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
        return None
    spec = crd["spec"]
    versions = spec.get("versions") or []
    version = next((v["name"] for v in versions if v.get("storage")), versions[0]["name"] if versions else None)
    return GVR(spec["group"], version, spec["names"]["plural"]) if version else None


class Cache:
    def __init__(self, client: Client, *, resync_period: float = 600.0) -> None:
        self.client = client
        self.resync_period = resync_period
        self._informers: dict[GVR, Informer] = {}
        self._lock = threading.RLock()
        self._digi_kinds: dict[str, GVR] = {}  # CRD name -> GVR
        self._kind_names: dict[GVR, str] = {}  # GVR -> Kind (e.g. Lamp)
        self._crds_by_gvr: dict[GVR, JSON] = {}
        self._gvr_by_type: dict[tuple[str, str], GVR] = {}  # (apiVersion, Kind) -> GVR
        self._digi_handlers: builtins.list[Handler] = []
        self._kind_handlers: builtins.list[Callable[[GVR, bool], None]] = []
        self._started = False
        self._crds = self.informer(CRD_GVR, label_selector=f"{DIGI_KIND_LABEL}=true", start=False)
        self._crds.add_handler(self._on_crd)

    # -- informers ---------------------------------------------------------------
    def informer(self, gvr: GVR, *, label_selector: str | None = None, start: bool = True) -> Informer:
        """The shared informer for `gvr`, started on demand (once the cache runs)."""
        with self._lock:
            informer = self._informers.get(gvr)
            if informer is None:
                informer = Informer(self.client, gvr, label_selector=label_selector,
                                    resync_period=self.resync_period)
                self._informers[gvr] = informer
                if start and self._started:
                    informer.start()
            return informer

    def start(self) -> None:
        with self._lock:
            self._started = True
            for informer in self._informers.values():
                if not informer.stopped:
                    informer.start()

    def stop(self) -> None:
        with self._lock:
            for informer in self._informers.values():
                informer.stop()

    @property
    def synced(self) -> bool:
        """All informers that exist have listed at least once (the readiness condition)."""
        with self._lock:
            return self._started and all(i.has_synced for i in self._informers.values() if not i.stopped)

    def wait_synced(self, timeout: float) -> bool:
        with self._lock:
            informers = [i for i in self._informers.values() if not i.stopped]
        return all(i.wait_synced(timeout) for i in informers)

    # -- reading -----------------------------------------------------------------
    def get(self, gvr: GVR, namespace: str | None, name: str) -> JSON | None:
        return self.informer(gvr).get(namespace, name)

    def list(self, gvr: GVR, namespace: str | None = None) -> builtins.list[JSON]:
        return self.informer(gvr).list(namespace)

    # -- digi kinds ----------------------------------------------------------------
    def digi_kinds(self) -> builtins.list[GVR]:
        with self._lock:
            return sorted(set(self._digi_kinds.values()))

    def kind_of(self, gvr: GVR) -> str:
        """The Kind name (e.g. `Lamp`) of a digi GVR."""
        with self._lock:
            return self._kind_names.get(gvr, gvr.plural)

    def gvr_of(self, obj: JSON) -> GVR | None:
        """The digi GVR of an object, from its apiVersion and kind."""
        with self._lock:
            return self._gvr_by_type.get((obj.get("apiVersion", ""), obj.get("kind", "")))

    def crd(self, gvr: GVR) -> JSON | None:
        """The CRD of a digi kind (its annotations configure workers)."""
        with self._lock:
            return self._crds_by_gvr.get(gvr)

    def find_digi(self, namespace: str, name: str) -> builtins.list[tuple[GVR, JSON]]:
        """Every digi called namespace/name, across kinds."""
        found = []
        for gvr in self.digi_kinds():
            obj = self.get(gvr, namespace, name)
            if obj is not None:
                found.append((gvr, obj))
        return found

    def count_digis(self) -> Counter[tuple[str, str]]:
        """(Kind, namespace) -> number of digis, for `digi_digis`."""
        counts: Counter[tuple[str, str]] = Counter()
        for gvr in self.digi_kinds():
            for obj in self.list(gvr):
                counts[self.kind_of(gvr), obj["metadata"].get("namespace", "")] += 1
        return counts

    def on_digi_event(self, fn: Handler) -> None:
        """`fn(event_type, obj, old)` for every digi of every kind, present and future."""
        with self._lock:
            self._digi_handlers.append(fn)
            kinds = self.digi_kinds()
        for gvr in kinds:
            self.informer(gvr).add_handler(fn)

    def on_digi_kind(self, fn: Callable[[GVR, bool], None]) -> None:
        """`fn(gvr, present)` when a digi kind appears (True) or goes away (False)."""
        with self._lock:
            self._kind_handlers.append(fn)
            kinds = self.digi_kinds()
        for gvr in kinds:
            fn(gvr, True)

    def _on_crd(self, event_type: str, crd: JSON, _old: JSON | None) -> None:
        # Handlers run outside self._lock: they take their own locks (lock order).
        name = crd["metadata"]["name"]
        gvr = None if event_type == DELETED else crd_gvr(crd)
        with self._lock:
            previous = self._digi_kinds.get(name)
            if gvr is not None:
                self._crds_by_gvr[gvr] = crd
            if previous == gvr:
                return
            dropped = self._drop_kind(name, previous) if previous is not None else None
            if gvr is not None:
                self._digi_kinds[name] = gvr
                self._kind_names[gvr] = crd["spec"]["names"]["kind"]
                for version in crd["spec"].get("versions") or []:
                    self._gvr_by_type[(f"{gvr.group}/{version['name']}", crd["spec"]["names"]["kind"])] = gvr
                informer = self.informer(gvr)
            digi_handlers, kind_handlers = list(self._digi_handlers), list(self._kind_handlers)
        if dropped is not None and previous is not None:
            for obj in dropped.list():
                for handler in digi_handlers:
                    handler(DELETED, obj, obj)
            for fn in kind_handlers:
                fn(previous, False)
            log.info("digi kind %s is no longer watched", previous)
        if gvr is None:
            return
        for handler in digi_handlers:
            informer.add_handler(handler)
        log.info("digi kind %s (%s) is watched", gvr, crd["spec"]["names"]["kind"])
        for fn in kind_handlers:
            fn(gvr, True)

    def _drop_kind(self, crd_name: str, gvr: GVR) -> Informer | None:
        del self._digi_kinds[crd_name]
        self._crds_by_gvr.pop(gvr, None)
        informer = self._informers.pop(gvr, None)
        if informer is not None:
            informer.stop()
        return informer
