"""Unit tests of the mount propagation rules (§5.2) as pure functions."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.mounter.propagate import Synced, flatten, merge_patch, plan, role


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply_merge_patch(out.get(k), v)
    return out


def lamp(gen: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "l1", "generation": gen}, "spec": spec}


def ctl(intent: Any = None, status: Any = None) -> dict[str, Any]:
    out = {}
    if intent is not None:
        out["intent"] = intent
    if status is not None:
        out["status"] = status
    return out


def run(entry: dict[str, Any], child: dict[str, Any], base: Synced | None, strict: bool = False):
    """Apply one plan to both sides the way the mounter does; return (entry, child, plan)."""
    p = plan(entry, child, base, strict=strict)
    child = copy.deepcopy(child)
    if p.down is not None:
        child["spec"] = apply_merge_patch(child.get("spec"), p.down)
        child["metadata"]["generation"] += 1
    if p.up is not None:
        up = dict(p.up, generation=child["metadata"]["generation"])
        entry = apply_merge_patch(entry, up)
    return entry, child, p


def test_roles() -> None:
    assert role(("control", "power", "intent")) == "intent"
    assert role(("control", "power", "status")) == "status"
    assert role(("data", "input", "url")) == "input"
    assert role(("data", "output", "x")) == "output"
    assert role(("obs", "motion")) == "obs"
    assert role(("mount", "g/v/r", "a")) == "mount"
    assert role(("ingress", "x", "flow")) == "other"


def test_new_mount_copies_child_up_but_hides_its_mounts() -> None:
    child = lamp(
        3, control={"power": ctl("on", "off")}, mount={"g/v/bulbs": {"default/b": {"mode": "hide"}}}
    )
    p = plan({"mode": "hide", "status": "active"}, child, None)
    assert p.down is None
    assert p.up == {
        "generation": 3,
        "spec": {"control": {"power": {"intent": "on", "status": "off"}}},
    }
    exposed = plan({"mode": "expose", "status": "active"}, child, None)
    assert exposed.up is not None and "mount" in exposed.up["spec"]


def test_parent_intent_flows_down_and_child_status_up_in_one_round() -> None:
    child = lamp(3, control={"brightness": ctl(0.2, 0.2)})
    entry, child, p = run({"status": "active"}, child, None)
    base = p.after_up
    entry["spec"]["control"]["brightness"]["intent"] = 0.5  # the room's driver writes
    child["spec"]["control"]["brightness"]["status"] = 0.3  # concurrently the lamp reports
    child["metadata"]["generation"] += 1
    entry, child, p = run(entry, child, base)
    assert p.down == {"control": {"brightness": {"intent": 0.5}}}
    assert p.up is not None and p.up["spec"] == {"control": {"brightness": {"status": 0.3}}}
    assert child["spec"]["control"]["brightness"] == {"intent": 0.5, "status": 0.3}
    assert entry["spec"] == child["spec"]
    assert entry["generation"] == child["metadata"]["generation"]
    again = plan(entry, child, p.after_up)
    assert again.down is None and again.up is None


def test_conflicting_intent_child_wins_when_permissive() -> None:
    child = lamp(1, control={"power": ctl("off")})
    entry, child, p = run({}, child, None)
    entry["spec"]["control"]["power"]["intent"] = "on"
    child["spec"]["control"]["power"]["intent"] = "dim"
    child["metadata"]["generation"] += 1
    entry, child, p = run(entry, child, p.after_up)
    assert p.down is None
    assert entry["spec"]["control"]["power"]["intent"] == "dim"


def test_strict_trims_and_the_parent_owns_intents() -> None:
    child = lamp(1, control={"power": ctl("off", "off")}, obs={"seen": 1})
    entry, child, p = run({}, child, None, strict=True)
    assert entry["spec"] == {"control": {"power": {"status": "off"}}, "obs": {"seen": 1}}
    entry["spec"]["control"]["power"]["intent"] = "on"
    entry["spec"]["control"]["power"]["status"] = "bogus"  # never flows down in strict mode
    child["spec"]["control"]["power"]["intent"] = "dim"  # conflicting: the parent owns intents
    child["metadata"]["generation"] += 1
    entry, child, p = run(entry, child, p.after_up, strict=True)
    assert child["spec"]["control"]["power"] == {"intent": "on", "status": "off"}


def test_inactive_carries_up_only_and_activation_releases_pending_intent() -> None:
    child = lamp(1, control={"brightness": ctl(0.1, 0.1)})
    entry, child, p = run({"status": "inactive"}, child, None)
    entry["spec"]["control"]["brightness"]["intent"] = 0.9
    child["spec"]["control"]["brightness"]["status"] = 0.4
    child["metadata"]["generation"] += 1
    entry, child, p = run(entry, child, p.after_up)
    assert p.down is None
    assert entry["spec"]["control"]["brightness"] == {"intent": 0.9, "status": 0.4}
    assert child["spec"]["control"]["brightness"]["intent"] == 0.1
    entry["status"] = "active"
    entry, child, p = run(entry, child, p.after_up)
    assert p.down == {"control": {"brightness": {"intent": 0.9}}}


def test_generation_guard_without_base() -> None:
    child = lamp(5, control={"power": ctl("off", "off")})
    stale = {"generation": 4, "spec": {"control": {"power": {"intent": "on", "status": "off"}}}}
    p = plan(stale, child, None)
    assert p.down is None
    assert p.up is not None and p.up["spec"] == {"control": {"power": {"intent": "off"}}}
    fresh = {"generation": 5, "spec": {"control": {"power": {"intent": "on"}}}}
    p = plan(fresh, child, None)
    # the replica saw generation 5: its difference is the parent's write; its missing
    # status is not read as a deletion, since without a base that is ambiguous
    assert p.down == {"control": {"power": {"intent": "on"}}}
    assert p.up == {"generation": 5}


def test_parent_deletion_with_a_base_flows_down_as_null() -> None:
    child = lamp(1, meta={"managed": True, "seed": 1})
    entry, child, p = run({}, child, None)
    del entry["spec"]["meta"]["managed"]
    entry, child, p = run(entry, child, p.after_up)
    assert p.down == {"meta": {"managed": None}}
    assert child["spec"]["meta"] == {"seed": 1}


def test_merge_patch_replaces_shapes() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1], "e": None}) == {("a", "b"): 1, ("d",): [1]}
    assert merge_patch({("x",): 1, ("y", "z"): 2}) == {"x": 1, "y": {"z": 2}}


json_leaf = st.one_of(st.integers(-3, 3), st.sampled_from(["on", "off"]), st.booleans())
attrs = st.sampled_from(["power", "brightness"])
sections = st.fixed_dictionaries(
    {},
    optional={
        "control": st.dictionaries(
            attrs,
            st.fixed_dictionaries({}, optional={"intent": json_leaf, "status": json_leaf}),
            max_size=2,
        ),
        "obs": st.dictionaries(st.sampled_from(["a", "b"]), json_leaf, max_size=2),
        "meta": st.dictionaries(st.sampled_from(["seed", "managed"]), json_leaf, max_size=2),
    },
)
edits = st.lists(st.tuples(st.sampled_from(["parent", "child"]), sections), max_size=6)


@settings(max_examples=150, deadline=None)
@given(start=sections, steps=edits, strict=st.booleans(), active=st.booleans())
def test_random_edits_converge_without_write_loops(
    start: dict[str, Any], steps: list[tuple[str, dict[str, Any]]], strict: bool, active: bool
) -> None:
    child = {"metadata": {"generation": 1}, "spec": start}
    entry: dict[str, Any] = {"status": "active" if active else "inactive"}
    entry, child, p = run(entry, child, None, strict)
    base = p.after_up
    for who, edit in steps:
        if who == "parent":
            entry = dict(entry, spec=apply_merge_patch(entry.get("spec"), edit))
        else:
            child = {
                "metadata": {"generation": child["metadata"]["generation"] + 1},
                "spec": apply_merge_patch(child["spec"], edit),
            }
        entry, child, p = run(entry, child, base, strict)
        base = p.after_up
    settled = plan(entry, child, base, strict=strict)
    assert settled.down is None and settled.up is None  # one round settles; nothing ping-pongs
    up_leaves = {
        k: v
        for k, v in flatten(child["spec"]).items()
        if not (strict and role(k) in ("intent", "input"))
    }
    replica = flatten(entry.get("spec"))
    for path, value in up_leaves.items():
        # what flows up is reflected, except an inactive parent's own pending writes
        pending = not active and base.leaves.get(path) == value
        assert replica.get(path) == value or pending, path
    if active and not strict:
        assert replica == flatten(child["spec"])  # an active permissive mount converges both ways
    assert entry["generation"] == child["metadata"]["generation"]
