"""The composition graph (§5.3): digis are nodes, mounts are edges.

Data flow: every digi's `spec.mount` is parsed by `mounts_of` into `Mount`
edges (parent → child, with `mode` and `status`); `CompositionGraph.upsert`
replaces a digi's out-edges whenever an informer delivers it, `remove` drops a
deleted digi. The graph is therefore rebuilt from the informers on start and
kept current by their events. Consumers:

- the admission webhook asks `check_update(parent, mounts)` whether a write may
  add its new edges (a multitree: no loop, no diamond), and gets the offending
  path back in the message;
- the mounter asks `effective_status(edge)`: among several parents holding an
  *active* mount of one child, only the first one to become active writes
  (single writer); the others are automatically yielded (`auto_yields()`);
- `violations()` re-validates the stored state, e.g. after writes admitted while
  the manager (and so the webhook) was down; violating edges carry no data;
- `to_json()` is what `GET /api/v1/graph` and `digi graph -o json` print.

A mount entry's key is `namespace/name`; a bare `name` means the parent's
namespace (the original assumed `default`, which is the same for digis there).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx

from manager.types import GVR, ObjectKey

ACTIVE = "active"
INACTIVE = "inactive"
HIDE = "hide"
EXPOSE = "expose"
MODES = (HIDE, EXPOSE)
STATUSES = (ACTIVE, INACTIVE)


@dataclass(frozen=True)
class Mount:
    """One mount entry: `parent.spec.mount.<child gvr>.<entry_key>`."""

    parent: ObjectKey
    child: ObjectKey
    entry_key: str
    mode: str = HIDE
    status: str = ACTIVE

    @property
    def edge(self) -> tuple[ObjectKey, ObjectKey]:
        return (self.parent, self.child)


class CompositionError(ValueError):
    """A mount that would break the multitree; `path` is the offending path of digis."""

    def __init__(self, message: str, path: list[ObjectKey]) -> None:
        super().__init__(message)
        self.path = path


def digi_key(gvr: GVR, obj: dict[str, Any]) -> ObjectKey:
    return ObjectKey.of(gvr, obj)


def parse_entry_key(entry_key: str, default_namespace: str) -> tuple[str, str]:
    """`ns/name` or `name` → (namespace, name)."""
    namespace, _, name = entry_key.rpartition("/")
    return (namespace or default_namespace, name)


def entry_key_of(child: ObjectKey) -> str:
    return f"{child.namespace}/{child.name}"


def mounts_of(gvr: GVR, obj: dict[str, Any]) -> list[Mount]:
    """The mount edges a digi object declares in `spec.mount`.

    Raises ValueError naming the field when a child type is not
    `group/version/plural` or a mode/status is not one of the allowed values.
    """
    parent = digi_key(gvr, obj)
    mounts: list[Mount] = []
    for gvr_text, entries in ((obj.get("spec") or {}).get("mount") or {}).items():
        child_gvr = GVR.parse(gvr_text)
        if str(child_gvr) != gvr_text:
            raise ValueError(f"spec.mount.{gvr_text}: write the child type as {child_gvr}")
        for entry_key, entry in (entries or {}).items():
            entry = entry or {}
            mode = entry.get("mode") or HIDE
            status = entry.get("status") or ACTIVE
            field = f"spec.mount.{gvr_text}.{entry_key}"
            if mode not in MODES:
                raise ValueError(f"{field}.mode is {mode!r}; use one of {', '.join(MODES)}")
            if status not in STATUSES:
                raise ValueError(f"{field}.status is {status!r}; use one of {', '.join(STATUSES)}")
            namespace, name = parse_entry_key(entry_key, parent.namespace)
            child = ObjectKey(child_gvr, namespace, name)
            mounts.append(Mount(parent, child, entry_key, mode, status))
    return mounts


def label(key: ObjectKey, namespace: str | None = None) -> str:
    """A digi's name as users see it: `name`, or `ns/name` outside `namespace`."""
    return key.name if key.namespace == namespace else f"{key.namespace}/{key.name}"


def format_path(path: Iterable[ObjectKey], namespace: str | None) -> str:
    return " → ".join(label(k, namespace) for k in path)


def check_edge(g: nx.DiGraph, parent: ObjectKey, child: ObjectKey) -> None:
    """Raise CompositionError if adding parent → child to the multitree `g` breaks it."""
    ns = parent.namespace
    if parent == child or (child in g and parent in g and nx.has_path(g, child, parent)):
        path = [parent] + (nx.shortest_path(g, child, parent) if parent != child else [child])
        raise CompositionError(
            f"mounting {label(child, ns)} under {label(parent, ns)} would close a loop: "
            f"{format_path(path, ns)}",
            path,
        )
    if g.has_edge(parent, child):
        return
    above = ({parent} | nx.ancestors(g, parent)) if parent in g else {parent}
    below = ({child} | nx.descendants(g, child)) if child in g else {child}
    for low in sorted(below):
        if low not in g:
            continue
        for top in sorted(above & ({low} | nx.ancestors(g, low))):
            old = nx.shortest_path(g, top, low)
            new = nx.shortest_path(g, top, parent) if top in g and parent in g else [parent]
            new = new + (nx.shortest_path(g, child, low) if child in g else [child])
            raise CompositionError(
                f"mounting {label(child, ns)} under {label(parent, ns)} would make a diamond "
                f"(two paths from {label(top, ns)} to {label(low, ns)}): "
                f"{format_path(new, ns)} and {format_path(old, ns)}",
                new,
            )


class CompositionGraph:
    """Digis and their mounts; see the module docstring for who calls what."""

    def __init__(self) -> None:
        self.g: nx.DiGraph = nx.DiGraph()
        self._seq = itertools.count()
        self._violations: list[tuple[Mount, str]] | None = None

    # -- updates from informers -------------------------------------------------

    def upsert(self, gvr: GVR, obj: dict[str, Any]) -> None:
        """Make the node of `obj` and its out-edges match the object."""
        key = digi_key(gvr, obj)
        self._violations = None
        self.g.add_node(key, exists=True)
        new = {m.child: m for m in mounts_of(gvr, obj)}
        for child in [c for c in self.g.successors(key) if c not in new]:
            self.g.remove_edge(key, child)
            self._drop_if_orphan(child)
        for child, mount in new.items():
            if child not in self.g:
                self.g.add_node(child, exists=False)
            data = self.g.get_edge_data(key, child)
            # `since` orders who became active first: the single writer is the earliest.
            keep_since = data is not None and data["mount"].status == ACTIVE == mount.status
            since = data["since"] if keep_since else next(self._seq)
            self.g.add_edge(key, child, mount=mount, since=since)

    def remove(self, key: ObjectKey) -> None:
        """The digi was deleted: drop its mounts; it stays a node while parents still name it."""
        if key not in self.g:
            return
        self._violations = None
        for child in list(self.g.successors(key)):
            self.g.remove_edge(key, child)
            self._drop_if_orphan(child)
        self.g.nodes[key]["exists"] = False
        self._drop_if_orphan(key)

    def _drop_if_orphan(self, key: ObjectKey) -> None:
        if not self.g.nodes[key].get("exists") and self.g.degree(key) == 0:
            self.g.remove_node(key)

    @classmethod
    def build(cls, objects: Iterable[tuple[GVR, dict[str, Any]]]) -> CompositionGraph:
        """A graph of the given (gvr, object) pairs, in creation order."""
        graph = cls()
        ordered = sorted(
            objects,
            key=lambda p: (p[1]["metadata"].get("creationTimestamp") or "", str(digi_key(*p))),
        )
        for gvr, obj in ordered:
            graph.upsert(gvr, obj)
        return graph

    # -- queries -----------------------------------------------------------------

    def mounts(self) -> Iterator[Mount]:
        for _, _, data in self.g.edges(data=True):
            yield data["mount"]

    def mount(self, parent: ObjectKey, child: ObjectKey) -> Mount | None:
        data = self.g.get_edge_data(parent, child)
        return None if data is None else data["mount"]

    def parents(self, child: ObjectKey) -> list[Mount]:
        if child not in self.g:
            return []
        return [self.g.edges[p, child]["mount"] for p in self.g.predecessors(child)]

    def children(self, parent: ObjectKey) -> list[Mount]:
        if parent not in self.g:
            return []
        return [self.g.edges[parent, c]["mount"] for c in self.g.successors(parent)]

    def exists(self, key: ObjectKey) -> bool:
        return key in self.g and bool(self.g.nodes[key].get("exists"))

    def writer(self, child: ObjectKey) -> ObjectKey | None:
        """The single parent whose intents reach `child`: the earliest active one."""
        active = [
            (self.g.edges[p, child]["since"], p)
            for p in (self.g.predecessors(child) if child in self.g else [])
            if self.g.edges[p, child]["mount"].status == ACTIVE
            and (p, child) not in self._violating_edges()
        ]
        return min(active)[1] if active else None

    def effective_status(self, parent: ObjectKey, child: ObjectKey) -> str:
        return ACTIVE if self.writer(child) == parent else INACTIVE

    def auto_yields(self) -> list[Mount]:
        """Active mounts that lose the single-writer rule and must be stored inactive."""
        losers = []
        for mount in self.mounts():
            if mount.status == ACTIVE and self.writer(mount.child) not in (mount.parent, None):
                losers.append(mount)
        return losers

    def _violating_edges(self) -> set[tuple[ObjectKey, ObjectKey]]:
        return {m.edge for m, _ in self.violations()}

    def violations(self) -> list[tuple[Mount, str]]:
        """Edges that break the multitree, blamed on the later edge (by `since`)."""
        if self._violations is None:
            self._violations = self._find_violations()
        return self._violations

    def _find_violations(self) -> list[tuple[Mount, str]]:
        clean: nx.DiGraph = nx.DiGraph()
        bad: list[tuple[Mount, str]] = []
        for parent, child, data in sorted(self.g.edges(data=True), key=lambda e: e[2]["since"]):
            try:
                check_edge(clean, parent, child)
            except CompositionError as err:
                bad.append((data["mount"], str(err)))
                continue
            clean.add_edge(parent, child)
        return bad

    def check_update(self, parent: ObjectKey, new_mounts: Iterable[Mount]) -> None:
        """Raise CompositionError if `parent` declaring `new_mounts` breaks the multitree.

        Only edges the write adds are checked, so a stored violation elsewhere
        (made while the webhook was down) does not block unrelated writes.
        """
        g = self.g.copy()
        old = set(g.successors(parent)) if parent in g else set()
        if parent in g:
            g.remove_edges_from([(parent, c) for c in old])
        new = list(new_mounts)
        for mount in new:
            if mount.child in old:
                g.add_edge(parent, mount.child)
        for mount in new:
            if mount.child not in old:
                check_edge(g, parent, mount.child)
                g.add_edge(parent, mount.child)

    def to_json(self) -> dict[str, Any]:
        """`{"nodes": [...], "edges": [...]}` with stored and effective status."""
        return {
            "nodes": [
                {
                    "gvr": str(k.gvr),
                    "namespace": k.namespace,
                    "name": k.name,
                    "exists": bool(self.g.nodes[k].get("exists")),
                }
                for k in sorted(self.g.nodes)
            ],
            "edges": [
                {
                    "parent": key_json(m.parent),
                    "child": key_json(m.child),
                    "mode": m.mode,
                    "status": m.status,
                    "effective": self.effective_status(m.parent, m.child),
                }
                for m in sorted(self.mounts(), key=lambda m: (m.parent, m.child))
            ],
        }

    def edge_counts(self) -> dict[str, int]:
        counts = {ACTIVE: 0, INACTIVE: 0}
        for mount in self.mounts():
            counts[mount.status] += 1
        return counts


def key_json(key: ObjectKey) -> dict[str, str]:
    return {"gvr": str(key.gvr), "namespace": key.namespace, "name": key.name}
