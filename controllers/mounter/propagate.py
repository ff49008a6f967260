"""What one mount edge must write, computed without I/O (§5.2).

Inputs: the parent's mount entry for the child (`{mode, status, generation,
spec}`, the *replica*), the child object, and `Synced`, the last state both
sides agreed on (the base of a three-way comparison). Output: a `Plan` with
the JSON merge patch for the child's `spec` (down), the merge patch for the
mount entry (up), and the new base after each write.

Compared leaf by leaf against the base:

- a leaf the parent changed in the replica flows down (if the mount is active
  and the leaf may flow down);
- a leaf the child changed flows up into the replica, with the child's
  `generation` (always, also for inactive mounts);
- a parent's write to a leaf that never flows down (`strict`: status, obs...)
  is undone in the replica;
- when both changed the same leaf, the side that owns it wins: a leaf that may
  flow up is owned by the child (a stale parent never overwrites fresh child
  state), a leaf that only flows down (intents/inputs in `strict` mode) by the
  parent. The original compared whole replicas by generation and overwrote;
  the three-way comparison keeps a parent's intent write that raced with an
  unrelated status change of the child.

Without a base (a new mount, or a manager restart) the generation guard of the
original decides: a replica whose `generation` equals the child's has seen the
child's current state, so the replica's differences are the parent's writes and
flow down (additions and changes only, deletions are ambiguous then); an older
replica is stale, so the child's state flows up and overwrites it.

Scope: with `mode: hide` the child's own `mount` subtree is out of scope both
ways. `strict` trimming: status/output/obs/meta never flow down, intent/input
never flow up; `permissive` (the default) trims nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
Leaves = dict[Path, Any]

_DELETED = object()

DOWN_ONLY_STRICT = frozenset({"intent", "input"})
UP_ONLY_STRICT = frozenset({"status", "output", "obs", "meta"})


def flatten(doc: Mapping[str, Any] | None, prefix: Path = ()) -> Leaves:
    """Leaves of a JSON document by path; lists are leaves, empty objects and nulls are not."""
    leaves: Leaves = {}
    for k, v in (doc or {}).items():
        if isinstance(v, Mapping):
            leaves.update(flatten(v, (*prefix, k)))
        elif v is not None:
            leaves[(*prefix, k)] = v
    return leaves


def merge_patch(changes: Mapping[Path, Any]) -> dict[str, Any]:
    """A JSON merge patch setting each path (deletions as null); deletions apply first."""
    patch: dict[str, Any] = {}
    ordered = sorted(changes.items(), key=lambda kv: kv[1] is not _DELETED)
    for path, value in ordered:
        node = patch
        for k in path[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[path[-1]] = None if value is _DELETED else value
    return patch


def role(path: Path) -> str:
    """intent, status, input, output, obs, meta, mount, or other."""
    head = path[0]
    if head == "control" and len(path) >= 3 and path[2] in ("intent", "status"):
        return path[2]
    if head == "data" and len(path) >= 2 and path[1] in ("input", "output"):
        return path[1]
    if head in ("obs", "meta", "mount"):
        return head
    return "other"


@dataclass(frozen=True)
class Policy:
    """The flow rules of one mount edge."""

    mode: str = "hide"
    active: bool = True
    strict: bool = False

    def in_scope(self, path: Path) -> bool:
        return not (self.mode == "hide" and path[0] == "mount")

    def flows_down(self, path: Path) -> bool:
        return self.in_scope(path) and not (self.strict and role(path) in UP_ONLY_STRICT)

    def flows_up(self, path: Path) -> bool:
        return self.in_scope(path) and not (self.strict and role(path) in DOWN_ONLY_STRICT)

    def scoped(self, leaves: Leaves) -> Leaves:
        return {p: v for p, v in leaves.items() if self.in_scope(p)}


@dataclass(frozen=True)
class Synced:
    """The leaves both sides last agreed on (the three-way base)."""

    leaves: Leaves = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    down: dict[str, Any] | None
    """Merge patch of the child's `spec`, or None."""
    up: dict[str, Any] | None
    """Merge patch of the parent's mount entry (`{"spec": ..., "generation": g}`), or None."""
    after_down: Synced
    after_up: Synced
    down_paths: tuple[Path, ...] = ()
    up_paths: tuple[Path, ...] = ()


def _changes(base: Leaves, new: Leaves) -> dict[Path, Any]:
    out: dict[Path, Any] = {p: v for p, v in new.items() if base.get(p, _DELETED) != v}
    out.update({p: _DELETED for p in base if p not in new})
    return out


def _overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _apply(leaves: Leaves, changes: Mapping[Path, Any]) -> Leaves:
    out = dict(leaves)
    for path, value in changes.items():
        for p in [p for p in out if _overlaps(p, path)]:
            del out[p]
        if value is not _DELETED:
            out[path] = value
    return out


def plan(
    entry: Mapping[str, Any],
    child: Mapping[str, Any],
    base: Synced | None,
    *,
    strict: bool = False,
) -> Plan:
    """The writes that bring one (replica, child) pair in sync; see the module docstring."""
    policy = Policy(
        mode=entry.get("mode") or "hide",
        active=(entry.get("status") or "active") == "active",
        strict=strict,
    )
    replica = policy.scoped(flatten(entry.get("spec")))
    current = policy.scoped(flatten(child.get("spec")))
    child_gen = int(child.get("metadata", {}).get("generation") or 0)
    replica_gen = entry.get("generation")

    parent_deletes = True
    if base is None:
        if replica and replica_gen is not None and int(replica_gen) >= child_gen:
            base, parent_deletes = Synced(current), False
        else:
            base = Synced(replica)

    by_parent = _changes(base.leaves, replica)
    if not parent_deletes:
        by_parent = {p: v for p, v in by_parent.items() if v is not _DELETED}
    by_child = _changes(base.leaves, current)

    up_all = {p: v for p, v in by_child.items() if policy.flows_up(p)}
    # A parent's write to a leaf that can never flow down (strict trimming) is undone.
    up_all.update(
        {
            p: current.get(p, _DELETED)
            for p in by_parent
            if p not in up_all and policy.flows_up(p) and not policy.flows_down(p)
        }
    )
    down_all = {
        p: v
        for p, v in by_parent.items()
        if policy.active
        and policy.flows_down(p)
        and not any(_overlaps(p, q) and policy.flows_up(q) for q in by_child)
    }
    # Leaves already equal on the other side advance the base without a write.
    up = {p: v for p, v in up_all.items() if replica.get(p, _DELETED) != v}
    down = {p: v for p, v in down_all.items() if current.get(p, _DELETED) != v}
    after_down = Synced(_apply(base.leaves, down_all))
    after_up = Synced(_apply(after_down.leaves, up_all))

    up_patch: dict[str, Any] | None = None
    if up or replica_gen is None or int(replica_gen) != child_gen or down:
        up_patch = {"generation": child_gen}
        if up:
            up_patch["spec"] = merge_patch(up)
    return Plan(
        down=merge_patch(down) if down else None,
        up=up_patch,
        after_down=after_down,
        after_up=after_up,
        down_paths=tuple(sorted(down)),
        up_paths=tuple(sorted(up)),
    )
