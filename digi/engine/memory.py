"""An in-process ModelClient: one object, with the API server's write semantics.

It keeps `metadata.resourceVersion` (bumped on every change) and
`metadata.generation` (bumped when `spec` changes), applies JSON merge patches,
refuses a guarded patch whose resourceVersion is stale with `Conflict` (HTTP
409), and records every stored version so a caller can replay them as events.
It is the engine's transport seam for tests and local experiments, not a
model of everything Kubernetes does (no admission, no schema pruning).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from digi.errors import Conflict
from digi.util import apply_merge_patch

Listener = Callable[[dict[str, Any], dict[str, Any] | None], None]


class MemoryModelClient:
    def __init__(self, obj: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._obj = copy.deepcopy(obj)
        meta = self._obj.setdefault("metadata", {})
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("generation", 1)
        self.history: list[dict[str, Any]] = [copy.deepcopy(self._obj)]
        self.conflicts = 0

    def get(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._obj)

    def patch(self, patch: dict[str, Any], *, resource_version: str | None = None) -> dict[str, Any]:
        with self._lock:
            meta = self._obj["metadata"]
            if resource_version is not None and resource_version != meta["resourceVersion"]:
                self.conflicts += 1
                raise Conflict(f"object has been modified: resourceVersion {resource_version} is stale, "
                               f"now {meta['resourceVersion']}; re-read and retry")
            body = {k: v for k, v in patch.items() if k != "metadata"}
            new = apply_merge_patch(self._obj, body)
            new["metadata"] = dict(meta)
            if new == self._obj:
                return copy.deepcopy(self._obj)
            if new.get("spec") != self._obj.get("spec"):
                new["metadata"]["generation"] = meta["generation"] + 1
            new["metadata"]["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
            self._obj = new
            self.history.append(copy.deepcopy(new))
            return copy.deepcopy(new)

    def update_spec(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Someone else (a user, the mounter) merge-patches the spec; returns the new object."""
        return self.patch({"spec": patch})
