"""Kubernetes Events on digis and other objects, deduplicated like client-go's recorder.

`record(obj, type_, reason, message)` writes a `core/v1` Event whose
`involvedObject` is `obj`; `kubectl describe` and `kubectl get events` show it.
A repeat of the same (object, type, reason, message) bumps `count` and
`lastTimestamp` on the existing Event instead of creating another one.
Events are writes, so only the leader records; otherwise they are only logged.
Failures to record are logged and never raised: an Event is a side channel.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from digi.errors import DigiError, NotFound
from manager.kube import AlreadyExists, Client
from manager.types import GVR

log = logging.getLogger(__name__)

EVENT_GVR = GVR("", "v1", "events")
NORMAL, WARNING = "Normal", "Warning"
_CACHE_SIZE = 4096


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: Client, *, component: str = "digi-manager",
                 host: str = "", may_write: Callable[[], bool] = lambda: True) -> None:
        self.client = client
        self.component, self.host = component, host
        self.may_write = may_write
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        log.info("event %s %s/%s %s: %s", type_, namespace, meta.get("name"), reason, message)
        if not self.may_write():
            return
        digest = hashlib.sha256(f"{meta.get('uid')}|{type_}|{reason}|{message}".encode()).hexdigest()[:16]
        name = f"{meta.get('name')}.{digest}"
        now = _now()
        with self._lock:
            count = self._counts.pop(name, 0) + 1
            self._counts[name] = count
            while len(self._counts) > _CACHE_SIZE:
                self._counts.popitem(last=False)
        try:
            if count > 1:
                try:
                    self.client.patch(EVENT_GVR, namespace, name, {"count": count, "lastTimestamp": now})
                    return
                except NotFound:
                    pass
            self.client.create(EVENT_GVR, namespace, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                    "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_, "reason": reason, "message": message, "count": count,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": self.component, "host": self.host},
                "reportingComponent": self.component, "reportingInstance": self.host,
            })
        except AlreadyExists:
            # Another incarnation of this manager recorded it first; continue its count.
            try:
                self.client.patch(EVENT_GVR, namespace, name, {"lastTimestamp": now})
            except DigiError as e:
                log.warning("cannot update event %s/%s: %s", namespace, name, e)
        except DigiError as e:
            log.warning("cannot record event %s on %s/%s: %s", reason, namespace, meta.get("name"), e)
