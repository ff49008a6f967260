"""The policer: `YieldPolicy` hands children between two parents while a condition holds (§5.4).

    apiVersion: digi.dev/v1
    kind: YieldPolicy
    spec:
      source: Room/room-1          # digi references: name, Kind/name or Kind/namespace/name
      target: Room/emergency
      condition: '.source.spec.control.mode.intent == "emergency"'   # jq

Data flow: events of YieldPolicies and of their source/target digis enqueue the
policy; `reconcile` evaluates the jq condition over `{source, target}` (the
two whole objects). The policy is edge-triggered (§5.4: when the condition
*becomes* true, when it *turns* false): it acts only when the value differs
from the one it last acted on, `status.holding` (with the Ready condition's
`observedGeneration`, so a new spec acts afresh; so does a new policy). In
between, mounts are the users' and the mounter's: `digi yield l1 room-1` while
the condition stays false stays yielded. Acting means, for every child mounted
under *both*, making the mount under the holder `active` and the other `inactive`:

- condition true: yield under the source first, then activate under the target;
- condition false: yield under the target first, then activate under the source.

Yielding before activating keeps the single-writer rule at every instant, so
the mounter never sees two active parents. A child whose active parent is a
third digi is not activated (the mounter would yield it again at once). The
`Ready` condition reports the outcome (`InvalidCondition` for a jq error).
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


def last_acted(policy: JSON) -> bool | None:
    """The condition value the policy last acted on (None: never, or not since a spec change)."""
    status = policy.get("status") or {}
    ready: JSON = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    if ready.get("observedGeneration") != policy["metadata"].get("generation"):
        return None
    holding = status.get("holding")
    return holding if isinstance(holding, bool) else None


def is_due(policy: JSON, holding: bool) -> bool:
    """Edge-triggered (§5.4: *becomes* true, *turns* false): act only on a new value."""
    return last_acted(policy) != holding


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
            self._status(policy, last_acted(policy), False, "InvalidReference", str(err))
            return None
        source = self.mgr.cache.get(skey.gvr, skey.namespace, skey.name)
        target = self.mgr.cache.get(tkey.gvr, tkey.namespace, tkey.name)
        if source is None or target is None:
            return None
        try:
            holding = holds(str(spec.get("condition", "false")), source, target)
        except ValueError as err:
            self._status(
                policy, last_acted(policy), False, "InvalidCondition", f"spec.condition: {err}"
            )
            return None
        if not is_due(policy, holding):
            return None
        # The cache may not have our own last status write yet; acting on it would hand the
        # children over again and undo a yield made since. Confirm on the stored policy.
        try:
            policy = self.mgr.client.get(POLICY_GVR, key.namespace, key.name)
        except NotFound:
            return None
        if not is_due(policy, holding):
            return None
        shared = {m.child for m in mounts_of(skey.gvr, source)} & {
            m.child for m in mounts_of(tkey.gvr, target)
        }
        holder, other = (tkey, skey) if holding else (skey, tkey)
        # A child another parent writes stays with it: activating it here would only be
        # undone by the mounter's automatic yield (the single-writer rule).
        kept = {c: w for c in shared if (w := self._third_writer(c, skey, tkey)) is not None}
        try:
            moved = self._set(other, shared, INACTIVE) + self._set(
                holder, shared - kept.keys(), ACTIVE
            )
        except Conflict:
            return Result(requeue=True)
        why = "condition true" if holding else "condition false"
        message = f"{why}: {holder.name} holds {len(shared) - len(kept)} shared children"
        if kept:
            message += "; left with their active parent: " + ", ".join(
                f"{c.name} ({w.name})" for c, w in sorted(kept.items())
            )
        log.info("yield policy %s: %s (%d mount entries changed)", key, message, moved)
        self._status(policy, holding, True, "Applied", message)
        return None

    def _third_writer(self, child: ObjectKey, *pair: ObjectKey) -> ObjectKey | None:
        """A parent other than `pair` holding an active mount of `child`, if any."""
        for gvr in self.mgr.cache.digi_kinds():
            for obj in self.mgr.cache.list(gvr):
                parent = ObjectKey.of(gvr, obj)
                if parent in pair:
                    continue
                with contextlib.suppress(ValueError):  # a bad spec.mount is the mounter's to report
                    if any(m.child == child and m.status == ACTIVE for m in mounts_of(gvr, obj)):
                        return parent
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
