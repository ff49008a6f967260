"""The policer: `YieldPolicy` hands children between two parents while a condition holds (§5.4).

    apiVersion: digi.dev/v1
    kind: YieldPolicy
    spec:
      source: Room/room-1          # digi references: name, Kind/name or Kind/namespace/name
      target: Room/emergency
      condition: '.source.spec.control.mode.intent == "emergency"'   # jq

Data flow: events of YieldPolicies and of their source/target digis enqueue the
policy; `reconcile` evaluates the jq condition over `{source, target}` (the
two whole objects) and, for every child mounted under *both*, makes the mount
under the holder `active` and the other `inactive`:

- condition true: yield under the source first, then activate under the target;
- condition false: yield under the target first, then activate under the source.

Yielding before activating keeps the single-writer rule at every instant, so
the mounter never sees two active parents. `status.holding` and the `Ready`
condition report the outcome (`InvalidCondition` for a jq error).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

import jq

from controllers.graph import ACTIVE, INACTIVE, mounts_of
from controllers.mounter.controller import ManagerLike
from controllers.syncer import Auri, AuriError, parse_auri, resolve
from digi.errors import Conflict, NotFound
from manager.controller import Controller, Result
from manager.types import GVR, ObjectKey

log = logging.getLogger(__name__)

JSON = dict[str, Any]
POLICY_GVR = GVR("digi.dev", "v1", "yieldpolicies")


def parse_ref(text: str) -> Auri:
    """A digi reference (an AURI without a path)."""
    return parse_auri(f"{text}.spec")


def holds(condition: str, source: JSON, target: JSON) -> bool:
    """jq `condition` over {source, target}: true when its first output is truthy."""
    out = jq.compile(condition).input_value({"source": source, "target": target}).all()
    return bool(out) and out[0] not in (False, None)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Policer:
    def __init__(self, mgr: ManagerLike) -> None:
        self.mgr = mgr
        self.controller = Controller("policer", self.reconcile, workers=1)
        self.controller.watches(mgr.cache.informer(POLICY_GVR))
        mgr.cache.on_digi_event(self._on_digi)
        mgr.add_controller(self.controller)

    def _on_digi(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        meta = obj.get("metadata", {})
        for policy in self.mgr.cache.list(POLICY_GVR):
            ns = policy["metadata"]["namespace"]
            spec = policy.get("spec") or {}
            for end in ("source", "target"):
                try:
                    ref = parse_ref(str(spec.get(end, "")))
                except AuriError:
                    continue
                if ((ref.namespace or ns), ref.name) == (meta.get("namespace"), meta.get("name")):
                    self.controller.enqueue(ObjectKey.of(POLICY_GVR, policy))

    def reconcile(self, key: ObjectKey) -> Result | None:
        policy = self.mgr.cache.get(POLICY_GVR, key.namespace, key.name)
        if policy is None or policy["metadata"].get("deletionTimestamp"):
            return None
        spec = policy.get("spec") or {}
        try:
            skey = resolve(parse_ref(str(spec.get("source", ""))), key.namespace, self.mgr.cache)
            tkey = resolve(parse_ref(str(spec.get("target", ""))), key.namespace, self.mgr.cache)
        except AuriError as err:
            self._status(policy, None, False, "InvalidReference", str(err))
            return None
        source = self.mgr.cache.get(skey.gvr, skey.namespace, skey.name)
        target = self.mgr.cache.get(tkey.gvr, tkey.namespace, tkey.name)
        if source is None or target is None:
            return None
        try:
            holding = holds(str(spec.get("condition", "false")), source, target)
        except ValueError as err:
            self._status(policy, None, False, "InvalidCondition", f"spec.condition: {err}")
            return None
        shared = {m.child for m in mounts_of(skey.gvr, source)} & {
            m.child for m in mounts_of(tkey.gvr, target)
        }
        holder, other = (tkey, skey) if holding else (skey, tkey)
        try:
            moved = self._set(other, shared, INACTIVE) + self._set(holder, shared, ACTIVE)
        except Conflict:
            return Result(requeue=True)
        if moved:
            log.info(
                "yield policy %s: %s holds %d children (%s)",
                key,
                holder.name,
                len(shared),
                "condition true" if holding else "condition false",
            )
        message = f"{holder.name} holds {len(shared)} shared children"
        self._status(policy, holding, True, "Applied", message)
        return None

    def _set(self, parent: ObjectKey, children: set[ObjectKey], status: str) -> int:
        """Set the mount status of `children` under `parent`; the number of entries changed."""
        for _ in range(5):
            obj = self.mgr.client.get(parent.gvr, parent.namespace, parent.name)
            edits: dict[str, dict[str, Any]] = {}
            for mount in mounts_of(parent.gvr, obj):
                if mount.child in children and mount.status != status:
                    edits.setdefault(str(mount.child.gvr), {})[mount.entry_key] = {"status": status}
            if not edits:
                return 0
            try:
                self.mgr.client.patch(
                    parent.gvr,
                    parent.namespace,
                    parent.name,
                    {"spec": {"mount": edits}},
                    resource_version=obj["metadata"]["resourceVersion"],
                )
            except Conflict:
                continue
            return sum(len(v) for v in edits.values())
        raise Conflict(f"{parent} kept changing while the policer set mount status")

    def _status(
        self, policy: JSON, holding: bool | None, ready: bool, reason: str, message: str
    ) -> None:
        old = policy.get("status") or {}
        prev: JSON = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
        cond = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": policy["metadata"].get("generation"),
        }
        same = all(prev.get(k) == v for k, v in cond.items())
        if same and old.get("holding") == holding:
            return
        cond["lastTransitionTime"] = prev.get("lastTransitionTime") if same else _now()
        with contextlib.suppress(NotFound):
            self.mgr.client.patch(
                POLICY_GVR,
                policy["metadata"]["namespace"],
                policy["metadata"]["name"],
                {"status": {"holding": holding, "conditions": [cond]}},
                subresource="status",
            )


def setup(mgr: ManagerLike) -> Policer:
    return Policer(mgr)
