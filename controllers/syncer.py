"""The syncer: `Sync` bindings between digi attributes (§6), and the pipes built on them.

A `Sync` (`digi.dev/v1`, namespaced) names two AURIs and a mode:

    spec: {source: "l1.spec.obs.reason", target: "Room/r1.spec.obs.last", mode: match|sync}

AURI forms (the original's, plus a bare name): `name.path`, `Kind/name.path`,
`Kind/namespace/name.path`, `group/version/Kind/namespace/name.path`; the path
starts at the object root (`.spec.…`; a path not starting with `spec` is taken
under `spec`). A bare name is looked up across digi kinds in the Sync's
namespace.

Data flow: events of Syncs and of every digi enqueue the Sync keys that refer
to the digi; `reconcile` reads both ends from the cache and compares each with
the last value the binding agreed on (`status.lastValue`, so a restart keeps
it):

- `match`: the target follows the source (target-side edits are overwritten);
- `sync`: whichever side changed since the last agreement is copied to the
  other; when both changed, the source wins;
- deleting a `match` binding clears the target attribute (a finalizer holds the
  Sync until that write is done);
- an attribute is written by at most one `match` binding: a second one targeting
  it gets `Ready=False, reason=TargetTaken` and writes nothing.

Plans come from the cache; one that writes is made again on the objects read
fresh from the API server (the cache may lag the binding's own last writes, and
a stale `lastValue` would make a quick target edit look like a conflict the
source wins). Writes are merge patches that make the target attribute *equal*
to the value (keys missing from the value are removed), guarded by
resourceVersion and retried on 409. `status.conditions[Ready]` says what happened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from controllers.mounter.controller import Kinds, ManagerLike
from digi.errors import Conflict, DigiError, NotFound
from manager.controller import Controller, Result
from manager.types import GVR, ObjectKey

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SYNC_GVR = GVR("digi.dev", "v1", "syncs")
FINALIZER = "digi.dev/syncer"
MODES = ("match", "sync")


class AuriError(DigiError):
    """An AURI that does not parse or does not name exactly one digi."""


@dataclass(frozen=True)
class Auri:
    """An attribute of a digi: which digi (kind optional) and the path from the object root."""

    name: str
    path: tuple[str, ...]
    namespace: str | None = None
    kind: str | None = None
    group: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        head = "/".join(p for p in (self.group, self.version, self.kind, self.namespace) if p)
        return f"{head + '/' if head else ''}{self.name}.{'.'.join(self.path)}"


def parse_auri(text: str) -> Auri:
    segs = text.strip().lstrip("/").split("/")
    last, dot, rest = segs[-1].partition(".")
    if not dot or not rest or not last:
        raise AuriError(
            f"{text!r} has no attribute path; write it as NAME.spec.PATH, e.g. l1.spec.obs.reason"
        )
    path = tuple(rest.split("."))
    if path[0] != "spec":
        path = ("spec", *path)
    head = segs[:-1]
    if len(head) == 0:
        return Auri(last, path)
    if len(head) == 1:
        return Auri(last, path, kind=head[0])
    if len(head) == 2:
        return Auri(last, path, namespace=head[1], kind=head[0])
    if len(head) == 4:
        return Auri(last, path, namespace=head[3], kind=head[2], group=head[0], version=head[1])
    raise AuriError(
        f"{text!r} is not an AURI: use name.path, Kind/name.path, Kind/namespace/name.path "
        "or group/version/Kind/namespace/name.path"
    )


def resolve(auri: Auri, default_namespace: str, cache: Any) -> ObjectKey:
    """The digi an AURI names, from the digi kinds and objects the cache holds."""
    namespace = auri.namespace or default_namespace
    found = []
    for gvr in cache.digi_kinds():
        kind = cache.kind_of(gvr)
        if auri.kind and auri.kind.lower() not in (kind.lower(), gvr.plural):
            continue
        if auri.group and (auri.group, auri.version) != (gvr.group, gvr.version):
            continue
        if cache.get(gvr, namespace, auri.name) is not None:
            found.append(ObjectKey(gvr, namespace, auri.name))
    if len(found) != 1:
        what = "no digi" if not found else f"{len(found)} digis ({', '.join(map(str, found))})"
        raise AuriError(
            f"{auri}: {what} named {namespace}/{auri.name}; name the kind, e.g. Lamp/{auri.name}"
        )
    return found[0]


_MISSING = object()


def get_path(obj: JSON, path: tuple[str, ...]) -> Any:
    node: Any = obj
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return _MISSING
        node = node[k]
    return node


def equalizing_patch(current: Any, value: Any) -> Any:
    """A merge patch turning `current` into exactly `value` (None deletes)."""
    if isinstance(current, dict) and isinstance(value, dict):
        patch = {k: equalizing_patch(current.get(k, _MISSING), v) for k, v in value.items()}
        patch.update({k: None for k in current if k not in value})
        return patch
    return value


def set_path_patch(obj: JSON, path: tuple[str, ...], value: Any) -> JSON:
    """A merge patch setting `obj`'s attribute at `path` to `value` (`_MISSING`/None: remove)."""
    current = get_path(obj, path)
    leaf = None if value is _MISSING else value
    inner = equalizing_patch(None if current is _MISSING else current, leaf)
    for k in reversed(path):
        inner = {k: inner}
    return inner


def plan(mode: str, sync: JSON, s_val: Any, t_val: Any) -> tuple[Any, str | None]:
    """The value both ends agree on next, and which end must be written to get there (if any)."""
    status = sync.get("status") or {}
    base = status.get("lastValue", _MISSING) if status.get("hasValue") else _MISSING
    if s_val == t_val:
        return s_val, None
    if mode == "match" or t_val == base or (base is _MISSING and s_val is not _MISSING):
        return s_val, "target"
    if s_val == base:
        return t_val, "source"
    return s_val, "target"  # both changed since the last agreement: the source wins


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Syncer:
    def __init__(self, mgr: ManagerLike, workers: int = 1) -> None:
        self.mgr = mgr
        self.kinds = Kinds(mgr.cache)
        self.controller = Controller("syncer", self.reconcile, workers=workers)
        self.controller.watches(mgr.cache.informer(SYNC_GVR))
        mgr.cache.on_digi_event(self._on_digi)
        mgr.add_controller(self.controller)

    def _on_digi(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        meta = obj.get("metadata", {})
        for sync in self.mgr.cache.list(SYNC_GVR):
            spec = sync.get("spec") or {}
            names = set()
            for end in ("source", "target"):
                try:
                    auri = parse_auri(str(spec.get(end, "")))
                except AuriError:
                    continue
                names.add((auri.namespace or sync["metadata"]["namespace"], auri.name))
            if (meta.get("namespace"), meta.get("name")) in names:
                self.controller.enqueue(ObjectKey.of(SYNC_GVR, sync))

    # -- reconcile -----------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result | None:
        sync = self.mgr.cache.get(SYNC_GVR, key.namespace, key.name)
        if sync is None:
            return None
        try:
            if sync["metadata"].get("deletionTimestamp"):
                self._finalize(sync)
                return None
            if FINALIZER not in (sync["metadata"].get("finalizers") or []):
                finalizers = [*(sync["metadata"].get("finalizers") or []), FINALIZER]
                self.mgr.client.patch(
                    SYNC_GVR,
                    key.namespace,
                    key.name,
                    {"metadata": {"finalizers": finalizers}},
                    resource_version=sync["metadata"]["resourceVersion"],
                )
                return None  # the update event brings us back with the finalizer on
            self._sync(sync)
        except Conflict:
            return Result(requeue=True)
        except AuriError as err:
            self._status(sync, False, "InvalidReference", str(err))
        return None

    def _ends(self, sync: JSON) -> tuple[Auri, ObjectKey, Auri, ObjectKey]:
        spec = sync.get("spec") or {}
        ns = sync["metadata"]["namespace"]
        source, target = (
            parse_auri(str(spec.get("source", ""))),
            parse_auri(str(spec.get("target", ""))),
        )
        return (
            source,
            resolve(source, ns, self.mgr.cache),
            target,
            resolve(target, ns, self.mgr.cache),
        )

    def _taken_by(self, sync: JSON, target: ObjectKey, path: tuple[str, ...]) -> str | None:
        """The older match binding that already writes this target attribute, if any."""
        mine = (sync["metadata"].get("creationTimestamp") or "", sync["metadata"]["name"])
        for other in self.mgr.cache.list(SYNC_GVR, sync["metadata"]["namespace"]):
            spec = other.get("spec") or {}
            theirs = (other["metadata"].get("creationTimestamp") or "", other["metadata"]["name"])
            if theirs >= mine or spec.get("mode", "match") != "match":
                continue
            try:
                auri = parse_auri(str(spec.get("target", "")))
                key = resolve(auri, other["metadata"]["namespace"], self.mgr.cache)
            except AuriError:
                continue
            if key == target and auri.path == path:
                return str(other["metadata"]["name"])
        return None

    def _sync(self, sync: JSON) -> None:
        mode = (sync.get("spec") or {}).get("mode", "match")
        if mode not in MODES:
            self._status(sync, False, "InvalidMode", f"spec.mode is {mode!r}; use match or sync")
            return
        source, skey, target, tkey = self._ends(sync)
        if mode == "match":
            other = self._taken_by(sync, tkey, target.path)
            if other is not None:
                self._status(
                    sync,
                    False,
                    "TargetTaken",
                    f"{target} is already written by match binding {other}; an input has one writer",
                )
                return
        src = self.mgr.cache.get(skey.gvr, skey.namespace, skey.name)
        tgt = self.mgr.cache.get(tkey.gvr, tkey.namespace, tkey.name)
        if src is None or tgt is None:
            return
        value, write = plan(mode, sync, get_path(src, source.path), get_path(tgt, target.path))
        if write is not None:
            # The cache may lag this binding's own last writes (the target, status.lastValue):
            # a plan from it can take a quick edit of the target for a stale value and revert
            # it, or copy a stale target back over the source. Writes are decided on fresh state.
            meta = sync["metadata"]
            try:
                sync = self.mgr.client.get(SYNC_GVR, meta["namespace"], meta["name"])
                src = self.mgr.client.get(skey.gvr, skey.namespace, skey.name)
                tgt = self.mgr.client.get(tkey.gvr, tkey.namespace, tkey.name)
            except NotFound:
                return  # its deletion event brings the binding back
            value, write = plan(mode, sync, get_path(src, source.path), get_path(tgt, target.path))
        if write == "target":
            self._write(tkey, tgt, target.path, value, sync)
        elif write == "source":
            self._write(skey, src, source.path, value, sync)
        self._status(sync, True, "Synced", f"{target} follows {source}", value)

    def _write(
        self, key: ObjectKey, obj: JSON, path: tuple[str, ...], value: Any, sync: JSON
    ) -> None:
        patch = set_path_patch(obj, path, value)
        self.mgr.client.patch(
            key.gvr,
            key.namespace,
            key.name,
            patch,
            resource_version=obj["metadata"]["resourceVersion"],
        )
        log.info(
            "sync write binding=%s/%s object=%s path=%s",
            sync["metadata"]["namespace"],
            sync["metadata"]["name"],
            key,
            ".".join(path),
        )

    def _finalize(self, sync: JSON) -> None:
        mode = (sync.get("spec") or {}).get("mode", "match")
        if mode == "match":
            try:
                _, _, target, tkey = self._ends(sync)
                tgt = self.mgr.client.get(tkey.gvr, tkey.namespace, tkey.name)
                if get_path(tgt, target.path) is not _MISSING:
                    self._write(tkey, tgt, target.path, _MISSING, sync)
            except (AuriError, NotFound):
                pass  # nothing left to clear
        finalizers = [f for f in sync["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.mgr.client.patch(
            SYNC_GVR,
            sync["metadata"]["namespace"],
            sync["metadata"]["name"],
            {"metadata": {"finalizers": finalizers}},
            resource_version=sync["metadata"]["resourceVersion"],
        )

    def _status(
        self, sync: JSON, ready: bool, reason: str, message: str, value: Any = _MISSING
    ) -> None:
        old = sync.get("status") or {}
        cond = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": sync["metadata"].get("generation"),
        }
        prev: JSON = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
        same = all(prev.get(k) == v for k, v in cond.items())
        has_value = value is not _MISSING
        if (
            same
            and old.get("hasValue") == has_value
            and old.get("lastValue") == (value if has_value else None)
        ):
            return
        cond["lastTransitionTime"] = prev.get("lastTransitionTime") if same else _now()
        body = {
            "status": {
                "conditions": [cond],
                "hasValue": has_value,
                "lastValue": value if has_value else None,
            }
        }
        with contextlib.suppress(NotFound):
            self.mgr.client.patch(
                SYNC_GVR,
                sync["metadata"]["namespace"],
                sync["metadata"]["name"],
                body,
                subresource="status",
            )


def setup(mgr: ManagerLike) -> Syncer:
    return Syncer(mgr)
