"""Unit tests of the composition graph (§5.3): multitree checks, path messages, single writer."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.graph import (
    ACTIVE,
    INACTIVE,
    CompositionError,
    CompositionGraph,
    Mount,
    mounts_of,
)
from manager.types import GVR, ObjectKey

HOMES = GVR("mock.digi.dev", "v1", "homes")
ROOMS = GVR("mock.digi.dev", "v1", "rooms")
LAMPS = GVR("mock.digi.dev", "v1", "lamps")


def digi(gvr: GVR, name: str, *children: tuple[GVR, str, str], ts: str = "") -> dict[str, Any]:
    mount: dict[str, dict[str, Any]] = {}
    for child_gvr, child, status in children:
        mount.setdefault(str(child_gvr), {})[f"default/{child}"] = {
            "mode": "hide",
            "status": status,
        }
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts},
        "spec": {"mount": mount},
    }


def key(gvr: GVR, name: str) -> ObjectKey:
    return ObjectKey(gvr, "default", name)


def test_mounts_of_parses_entries_and_defaults() -> None:
    obj = {
        "metadata": {"name": "r", "namespace": "ns1"},
        "spec": {
            "mount": {str(LAMPS): {"l1": {}, "other/l2": {"mode": "expose", "status": INACTIVE}}}
        },
    }
    got = {m.child: m for m in mounts_of(ROOMS, obj)}
    assert got[ObjectKey(LAMPS, "ns1", "l1")].mode == "hide"
    assert got[ObjectKey(LAMPS, "ns1", "l1")].status == ACTIVE
    assert got[ObjectKey(LAMPS, "other", "l2")].mode == "expose"
    assert got[ObjectKey(LAMPS, "other", "l2")].status == INACTIVE


def test_mounts_of_names_the_bad_field() -> None:
    obj = {"metadata": {"name": "r"}, "spec": {"mount": {str(LAMPS): {"l1": {"status": "on"}}}}}
    with pytest.raises(ValueError, match=r"spec\.mount\.mock\.digi\.dev/v1/lamps\.l1\.status"):
        mounts_of(ROOMS, obj)


def test_loop_is_refused_with_its_path() -> None:
    g = CompositionGraph.build([(HOMES, digi(HOMES, "home-1", (ROOMS, "room-1", ACTIVE)))])
    mounts = mounts_of(ROOMS, digi(ROOMS, "room-1", (HOMES, "home-1", ACTIVE)))
    with pytest.raises(CompositionError) as err:
        g.check_update(key(ROOMS, "room-1"), mounts)
    assert str(err.value) == (
        "mounting home-1 under room-1 would close a loop: room-1 → home-1 → room-1"
    )


def test_long_loop_and_self_mount() -> None:
    g = CompositionGraph.build(
        [
            (HOMES, digi(HOMES, "home-1", (ROOMS, "room-1", ACTIVE))),
            (ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE))),
        ]
    )
    with pytest.raises(CompositionError, match="l1 → home-1 → room-1 → l1"):
        g.check_update(
            key(LAMPS, "l1"), mounts_of(LAMPS, digi(LAMPS, "l1", (HOMES, "home-1", ACTIVE)))
        )
    with pytest.raises(CompositionError, match="close a loop: l1 → l1"):
        g.check_update(key(LAMPS, "l1"), mounts_of(LAMPS, digi(LAMPS, "l1", (LAMPS, "l1", ACTIVE))))


def test_diamond_is_refused_with_both_paths() -> None:
    g = CompositionGraph.build(
        [
            (HOMES, digi(HOMES, "home", (ROOMS, "room-1", ACTIVE), (ROOMS, "room-2", ACTIVE))),
            (ROOMS, digi(ROOMS, "room-2", (LAMPS, "l1", ACTIVE))),
        ]
    )
    with pytest.raises(CompositionError) as err:
        g.check_update(
            key(ROOMS, "room-1"), mounts_of(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))
        )
    message = str(err.value)
    assert "mounting l1 under room-1 would make a diamond" in message
    assert "home → room-1 → l1" in message and "home → room-2 → l1" in message


def test_shortcut_edge_is_a_diamond() -> None:
    g = CompositionGraph.build(
        [
            (HOMES, digi(HOMES, "home", (ROOMS, "room-1", ACTIVE))),
            (ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE))),
        ]
    )
    mounts = mounts_of(HOMES, digi(HOMES, "home", (ROOMS, "room-1", ACTIVE), (LAMPS, "l1", ACTIVE)))
    with pytest.raises(CompositionError, match="home → l1 and home → room-1 → l1"):
        g.check_update(key(HOMES, "home"), mounts)


def test_two_unrelated_parents_are_a_multitree() -> None:
    g = CompositionGraph.build([(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))])
    g.check_update(
        key(ROOMS, "emergency"), mounts_of(ROOMS, digi(ROOMS, "emergency", (LAMPS, "l1", ACTIVE)))
    )


def test_rewriting_existing_edges_is_not_rechecked() -> None:
    g = CompositionGraph.build(
        [
            (HOMES, digi(HOMES, "home", (ROOMS, "room-1", ACTIVE))),
            (ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE))),
        ]
    )
    g.check_update(
        key(ROOMS, "room-1"), mounts_of(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", INACTIVE)))
    )


def test_second_active_parent_is_auto_yielded_first_writer_wins() -> None:
    g = CompositionGraph()
    g.upsert(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))
    g.upsert(ROOMS, digi(ROOMS, "room-2", (LAMPS, "l1", ACTIVE)))
    l1 = key(LAMPS, "l1")
    assert g.writer(l1) == key(ROOMS, "room-1")
    assert [m.parent for m in g.auto_yields()] == [key(ROOMS, "room-2")]
    # yield the first: the second must still be re-activated explicitly (stored status decides)
    g.upsert(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", INACTIVE)))
    assert g.writer(l1) == key(ROOMS, "room-2")
    assert g.auto_yields() == []
    # re-activating the first now makes it the newcomer, which loses
    g.upsert(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))
    assert g.writer(l1) == key(ROOMS, "room-2")
    assert [m.parent for m in g.auto_yields()] == [key(ROOMS, "room-1")]
    assert g.effective_status(key(ROOMS, "room-1"), l1) == INACTIVE


def test_violations_blame_the_later_edge_and_carry_no_writer() -> None:
    g = CompositionGraph()
    g.upsert(HOMES, digi(HOMES, "home-1", (ROOMS, "room-1", ACTIVE)))
    g.upsert(ROOMS, digi(ROOMS, "room-1", (HOMES, "home-1", ACTIVE)))
    ((mount, message),) = g.violations()
    assert mount.parent == key(ROOMS, "room-1")
    assert "home-1 → room-1" in message
    assert g.writer(key(HOMES, "home-1")) is None
    assert g.writer(key(ROOMS, "room-1")) == key(HOMES, "home-1")


def test_delete_keeps_referenced_child_node_until_unmounted() -> None:
    g = CompositionGraph()
    g.upsert(LAMPS, digi(LAMPS, "l1"))
    g.upsert(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))
    g.remove(key(LAMPS, "l1"))
    assert not g.exists(key(LAMPS, "l1"))
    assert [m.child for m in g.children(key(ROOMS, "room-1"))] == [key(LAMPS, "l1")]
    g.upsert(ROOMS, digi(ROOMS, "room-1"))
    assert key(LAMPS, "l1") not in g.g
    g.remove(key(ROOMS, "room-1"))
    assert list(g.g.nodes) == []


def test_json_marks_effective_status() -> None:
    g = CompositionGraph()
    g.upsert(ROOMS, digi(ROOMS, "room-1", (LAMPS, "l1", ACTIVE)))
    g.upsert(ROOMS, digi(ROOMS, "room-2", (LAMPS, "l1", ACTIVE)))
    edges = {e["parent"]["name"]: e for e in g.to_json()["edges"]}
    assert edges["room-1"]["effective"] == ACTIVE
    assert edges["room-2"]["status"] == ACTIVE and edges["room-2"]["effective"] == INACTIVE
    assert g.edge_counts() == {ACTIVE: 2, INACTIVE: 0}
    assert isinstance(next(iter(g.mounts())), Mount)


def test_mounts_of_wants_the_normal_gvr_form() -> None:
    obj = {"metadata": {"name": "r"}, "spec": {"mount": {"/mock.digi.dev/v1/lamps/": {"l1": {}}}}}
    with pytest.raises(ValueError, match=r"write the child type as mock\.digi\.dev/v1/lamps"):
        mounts_of(ROOMS, obj)
