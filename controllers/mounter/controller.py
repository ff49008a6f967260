"""The mounter: one controller in the manager that serves every mount of every digi (§5.2).

Data flow: every digi event (from the manager's shared informers) updates the
`CompositionGraph` and enqueues the digi itself plus each of its parents, so
one reconcile handles one *parent* with all its mounts. For each mount:

1. a child that was deleted loses its replica (`mount.<gvr>.<ns/name>: null`);
2. an edge that breaks the multitree (stored while the webhook was down) carries
   nothing and gets a Warning Event naming the path;
3. a stored-active mount that loses the single-writer rule is written back as
   `inactive` (the automatic yield), with a Normal Event;
4. `propagate.plan` compares the replica and the child against the last-synced
   state; the down patch is written to the child (guarded by its
   resourceVersion; a parent's edges are written in parallel, up to
   `WRITE_CONCURRENCY` at once), and all up patches go into one guarded write
   of the parent.

409 conflicts re-read both sides from the API server and plan again. The
last-synced states live in memory; after a restart the generation guard of
`propagate` takes over. Writes are logged as one structured line each
(`mount write parent=… child=… direction=… generation=…`) and timed from the
triggering event's arrival into `digi_mount_propagation_seconds{direction}`.
The graph is served at `GET /api/v1/graph`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Protocol

from fastapi import APIRouter
from prometheus_client import Gauge, Histogram

from controllers.graph import (
    ACTIVE,
    INACTIVE,
    CompositionGraph,
    Mount,
    digi_key,
    mounts_of,
)
from controllers.mounter.propagate import Plan, Synced, plan
from digi.errors import Conflict, NotFound
from manager.controller import Controller, Result
from manager.informer import DELETED
from manager.types import GVR, ObjectKey

log = logging.getLogger(__name__)

JSON = dict[str, Any]
EdgeOutcome = tuple[bool, JSON | None]  # (replica entry changed, its merge patch)
_ATTEMPTS = 5
# Down writes of one parent's mounts in flight at once: a room of 100 lamps written one
# after another spent ~100 API round trips per intent change.
WRITE_CONCURRENCY = 16

propagation_seconds = Histogram(
    "digi_mount_propagation_seconds",
    "Seconds from observing the write that triggered a mount propagation to the propagated write",
    ("direction",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
graph_nodes = Gauge("digi_graph_nodes", "Digis in the composition graph")
graph_edges = Gauge("digi_graph_edges", "Mounts in the composition graph by status", ("status",))


class ManagerLike(Protocol):
    """The parts of `manager.runtime.Manager` the composition controllers use."""

    cache: Any
    client: Any
    events: Any
    http: Any

    @property
    def is_leader(self) -> bool: ...

    def add_controller(self, controller: Controller) -> Controller: ...

    def on_leading(self, fn: Callable[[], None]) -> None: ...


class Kinds:
    """Maps a digi object to its GVR through the digi kinds the cache knows."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def gvr_of(self, obj: JSON) -> GVR | None:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for gvr in self.cache.digi_kinds():
            if (gvr.group, gvr.version) == (group, version) and self.cache.kind_of(gvr) == obj.get(
                "kind"
            ):
                return gvr
        return None


class Mounter:
    def __init__(self, mgr: ManagerLike, *, strict: bool = False, workers: int = 2,
                 write_concurrency: int = WRITE_CONCURRENCY) -> None:
        self.mgr = mgr
        self.strict = strict
        self.kinds = Kinds(mgr.cache)
        self.graph = CompositionGraph()
        self.lock = threading.RLock()
        self._synced: dict[tuple[ObjectKey, ObjectKey], Synced] = {}
        self._written_gen: dict[ObjectKey, int] = {}
        self._observed: dict[ObjectKey, float] = {}
        self._deleted: set[ObjectKey] = set()
        self._reported: set[tuple[ObjectKey, ObjectKey, str]] = set()
        self.controller = Controller("mounter", self.reconcile, workers=workers)
        self._edge_pool = ThreadPoolExecutor(write_concurrency, thread_name_prefix="mounter-edge")
        mgr.cache.on_digi_event(self._on_event)
        mgr.add_controller(self.controller)
        mgr.http.include_router(self.router())
        graph_edges.labels(ACTIVE)
        graph_edges.labels(INACTIVE)

    # -- events --------------------------------------------------------------------

    def _on_event(self, event_type: str, obj: JSON, old: JSON | None) -> None:
        gvr = self.kinds.gvr_of(obj)
        if gvr is None:
            return
        key = digi_key(gvr, obj)
        with self.lock:
            parents = {m.parent for m in self.graph.parents(key)}
            if event_type == DELETED:
                self.graph.remove(key)
                self._deleted.add(key)
                self._written_gen.pop(key, None)
                for edge in [e for e in self._synced if key in e]:
                    del self._synced[edge]
            else:
                self._deleted.discard(key)
                try:
                    self.graph.upsert(gvr, obj)
                except ValueError as err:
                    log.warning("digi %s has an invalid mount: %s", key, err)
            now = time.monotonic()
            for k in (key, *parents):
                self._observed.setdefault(k, now)
            self._update_gauges()
        self.controller.enqueue(key)
        for parent in parents:
            self.controller.enqueue(parent)

    def _update_gauges(self) -> None:
        graph_nodes.set(self.graph.g.number_of_nodes())
        for status, n in self.graph.edge_counts().items():
            graph_edges.labels(status).set(n)

    # -- reading -------------------------------------------------------------------

    def _fresh(self, key: ObjectKey) -> JSON | None:
        """The cached object, unless the cache is behind a write this mounter made."""
        obj = self.mgr.cache.get(key.gvr, key.namespace, key.name)
        seen = self._written_gen.get(key, 0)
        if obj is not None and int(obj["metadata"].get("generation") or 0) >= seen:
            return dict(obj)
        return self._get(key)

    def _get(self, key: ObjectKey) -> JSON | None:
        try:
            return dict(self.mgr.client.get(key.gvr, key.namespace, key.name))
        except NotFound:
            return None

    def _remember(self, key: ObjectKey, obj: JSON) -> None:
        self._written_gen[key] = int(obj["metadata"].get("generation") or 0)

    # -- reconcile -----------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result | None:
        started = self._observed.pop(key, time.monotonic())
        parent = self._fresh(key)
        for _ in range(_ATTEMPTS):
            if parent is None:
                return None
            try:
                self._sync_parent(key, parent, started)
                return None
            except Conflict:
                log.info("mounter: %s moved on while syncing; retrying on fresh state", key)
                parent = self._get(key)
        return Result(requeue=True)

    def _sync_parent(self, key: ObjectKey, parent: JSON, started: float) -> None:
        try:
            mounts = mounts_of(key.gvr, parent)
        except ValueError:
            return  # logged on the event; the webhook refuses such writes
        with self.lock:
            violating = {m.edge: msg for m, msg in self.graph.violations()}
            writers = {m.child: self.graph.writer(m.child) for m in mounts}
        entries = (parent.get("spec") or {}).get("mount") or {}
        current = {m.edge for m in mounts}
        with self.lock:
            for edge in [e for e in self._synced if e[0] == key and e not in current]:
                del self._synced[edge]  # unmounted: a later mount starts from the generation guard
        pending: dict[tuple[ObjectKey, ObjectKey], Synced] = {}
        outcomes: list[EdgeOutcome | Callable[[], EdgeOutcome]] = []
        for mount in mounts:
            entry = dict(entries.get(str(mount.child.gvr), {}).get(mount.entry_key) or {})
            outcomes.append(self._sync_edge(parent, mount, entry, writers, violating, pending, started))
        up: dict[str, dict[str, Any]] = {}
        for mount, (changed, edit) in zip(mounts, self._write_all(outcomes), strict=True):
            if changed:
                up.setdefault(str(mount.child.gvr), {})[mount.entry_key] = edit
        if not up:
            with self.lock:
                self._synced.update(pending)
            return
        new = self.mgr.client.patch(
            key.gvr,
            key.namespace,
            key.name,
            {"spec": {"mount": up}},
            resource_version=parent["metadata"]["resourceVersion"],
        )
        self._remember(key, new)
        with self.lock:
            self._synced.update(pending)
        propagation_seconds.labels("up").observe(time.monotonic() - started)
        for gvr_text, edits in up.items():
            for entry_key, edit in edits.items():
                log.info(
                    "mount write parent=%s child=%s/%s direction=up generation=%s fields=%s",
                    key,
                    gvr_text,
                    entry_key,
                    (edit or {}).get("generation"),
                    "removed" if edit is None else ",".join(sorted(edit)),
                )

    def _write_all(
        self, outcomes: list[EdgeOutcome | Callable[[], EdgeOutcome]]
    ) -> list[EdgeOutcome]:
        """Run the edges' pending down writes (in parallel when there are several) and return
        every edge's outcome; the first failure is raised only after all writes are done, so a
        retry never races this attempt's writes."""
        writes = [o for o in outcomes if callable(o)]
        if len(writes) <= 1:
            return [o() if callable(o) else o for o in outcomes]
        futures = {id(o): self._edge_pool.submit(o) for o in writes}
        wait(futures.values())
        return [futures[id(o)].result() if callable(o) else o for o in outcomes]

    def _sync_edge(
        self,
        parent: JSON,
        mount: Mount,
        entry: JSON,
        writers: dict[ObjectKey, ObjectKey | None],
        violating: dict[tuple[ObjectKey, ObjectKey], str],
        pending: dict[tuple[ObjectKey, ObjectKey], Synced],
        started: float,
    ) -> EdgeOutcome | Callable[[], EdgeOutcome]:
        """The edge's (changed, merge patch of the mount entry: None removes it), or, when the
        child needs a down write, a call that writes it and then returns that outcome."""
        edge = mount.edge
        if edge in violating:
            self._report(parent, mount, "MountRejected", violating[edge])
            return False, None
        child = self._fresh(mount.child)
        if child is None:
            # A child that is gone after having been synced (or seen deleted) loses its replica;
            # a mount written before its child exists waits for it.
            if mount.child in self._deleted or "generation" in entry:
                with self.lock:
                    self._synced.pop(edge, None)
                return True, None
            return False, None
        edit: JSON = {}
        if "mode" not in entry:
            edit["mode"] = mount.mode
        writer = writers.get(mount.child)
        status = ACTIVE if writer == mount.parent else INACTIVE
        stale_writer = (
            mount.status == ACTIVE
            and writer is not None
            and writer != mount.parent
            and not self._still_writes(writer, mount.child)
        )
        if stale_writer:
            # A hand-over (yield there, activate here) whose first write this graph
            # has not seen yet: informers of different kinds deliver out of order.
            self.controller.enqueue_after(mount.parent, 0.5)
            return False, None
        if entry.get("status") != status and (mount.status == ACTIVE or "status" not in entry):
            edit["status"] = status
            # A new entry without a status (created with its mount) only gets `active`
            # filled in; a yield is when another parent writes the child.
            if status == INACTIVE and mount.status == ACTIVE and writer is not None:
                self._report(
                    parent,
                    mount,
                    "AutoYielded",
                    f"{mount.child.name} already has an active parent {writer.name}; "
                    f"the mount under {mount.parent.name} is inactive (yielded). "
                    f"Hand it over with 'digi activate {mount.child.name} {mount.parent.name}'.",
                )
        view = {**entry, "status": status, "mode": entry.get("mode") or mount.mode}
        with self.lock:
            base = self._synced.get(edge)
        first = plan(view, child, base, strict=self.strict)
        if first.down is None:
            return self._settle(edge, first, edit, pending)
        return lambda: self._write_down(mount, view, child, base, edit, pending, started)

    def _write_down(
        self,
        mount: Mount,
        view: JSON,
        child: JSON,
        base: Synced | None,
        edit: JSON,
        pending: dict[tuple[ObjectKey, ObjectKey], Synced],
        started: float,
    ) -> EdgeOutcome:
        """Write the child until its plan needs no down write; 409s re-read the child."""
        for _ in range(_ATTEMPTS):
            p = plan(view, child, base, strict=self.strict)
            if p.down is None:
                return self._settle(mount.edge, p, edit, pending)
            try:
                child = self.mgr.client.patch(
                    mount.child.gvr,
                    mount.child.namespace,
                    mount.child.name,
                    {"spec": p.down},
                    resource_version=child["metadata"]["resourceVersion"],
                )
            except Conflict:
                log.info(
                    "mounter: %s moved on while writing it; retrying on fresh state", mount.child
                )
                fresh = self._get(mount.child)
                if fresh is None:
                    return False, None
                child = fresh
                continue
            self._remember(mount.child, child)
            base = p.after_down
            with self.lock:
                self._synced[mount.edge] = base
            propagation_seconds.labels("down").observe(time.monotonic() - started)
            log.info(
                "mount write parent=%s child=%s direction=down generation=%s fields=%s",
                mount.parent,
                mount.child,
                child["metadata"].get("generation"),
                ",".join(".".join(path) for path in p.down_paths),
            )
        raise Conflict(f"child {mount.child} kept changing while the mounter wrote it")

    @staticmethod
    def _settle(
        edge: tuple[ObjectKey, ObjectKey],
        p: Plan,
        edit: JSON,
        pending: dict[tuple[ObjectKey, ObjectKey], Synced],
    ) -> EdgeOutcome:
        pending[edge] = p.after_up
        if p.up is not None:
            edit.update(p.up)
        return bool(edit), edit

    def _still_writes(self, parent: ObjectKey, child: ObjectKey) -> bool:
        """Whether `parent`'s stored mount of `child` is active, read from the API server."""
        obj = self._get(parent)
        if obj is None:
            return False
        try:
            return any(m.child == child and m.status == ACTIVE for m in mounts_of(parent.gvr, obj))
        except ValueError:
            return False

    def _report(self, parent: JSON, mount: Mount, reason: str, message: str) -> None:
        token = (mount.parent, mount.child, reason + message)
        if token in self._reported:
            return
        self._reported.add(token)
        kind = "Warning" if reason == "MountRejected" else "Normal"
        self.mgr.events.record(parent, kind, reason, message)

    # -- HTTP ----------------------------------------------------------------------

    def graph_json(self) -> JSON:
        with self.lock:
            data = self.graph.to_json()
            data["violations"] = [
                {"parent": m.parent.name, "child": m.child.name, "message": msg}
                for m, msg in self.graph.violations()
            ]
        return data

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/api/v1/graph", self.graph_json, methods=["GET"])
        return router

    def check(self, parent: ObjectKey, mounts: list[Mount]) -> None:
        """Raise CompositionError if `parent` declaring `mounts` breaks the multitree."""
        with self.lock:
            self.graph.check_update(parent, mounts)


def setup(mgr: ManagerLike, *, strict: bool = False) -> Mounter:
    """Register the mounter with a manager; returns it (its `graph` is what admission reads)."""
    return Mounter(mgr, strict=strict)
