"""Composition against the real API server, the real webhook and real drivers (§5, §6).

One manager (with the admission webhook over TLS) serves the module; each test
works in its own namespace. Lamps, rooms and buildings run their shipped
drivers as local workers; `Node` digis (no driver, free-form) are used where a
test needs shapes the shipped schemas cannot express (loops) or free attributes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from controllers.admission import MATCH_CONDITIONS, VWC_GVR, rules_for, update_webhook
from controllers.syncer import SYNC_GVR
from digi.kinds.model import load_kind, render_cr
from digi.space import Space
from manager.cache import DIGI_KIND_LABEL
from manager.types import GVR
from manager.workers.base import DRIVER_DIR_ANNOTATION
from tests.composition_fixtures import (
    BUILDINGS,
    LAMPS,
    NODES,
    REPO,
    ROOMS,
    CompositionSpace,
    composition_space,
    mounts,
    node,
    node_crd,
)
from tests.manager_fixtures import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cs(space: Space, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompositionSpace]:
    yield from composition_space(space, tmp_path_factory.mktemp("composition-manager"))


def spec_at(cs: CompositionSpace, gvr: GVR, ns: str, name: str, *path: str) -> Any:
    node: Any = cs.get(gvr, ns, name).get("spec") or {}
    for k in path:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def run(cs: CompositionSpace, kind: str, ns: str, *names: str) -> None:
    code, out = cs.digi("run", str(REPO / "digis" / kind), *names, "-n", ns)
    assert code == 0, out


def mount(cs: CompositionSpace, child: str, parent: str, ns: str) -> str:
    code, out = cs.digi("mount", child, parent, "-n", ns)
    assert code == 0, out
    return out


def lamp_brightness(cs: CompositionSpace, ns: str, name: str) -> tuple[Any, Any]:
    b = spec_at(cs, LAMPS, ns, name, "control", "brightness") or {}
    return b.get("intent"), b.get("status")


def replica(
    cs: CompositionSpace, parent_gvr: GVR, ns: str, parent: str, child_gvr: GVR, child: str
) -> Any:
    return spec_at(cs, parent_gvr, ns, parent, "mount", str(child_gvr), f"{ns}/{child}") or {}


def test_room_divides_brightness_among_lamps_and_reflects_their_status(
    cs: CompositionSpace, namespace: str
) -> None:
    ns = namespace
    run(cs, "lamp", ns, "l1", "l2")
    run(cs, "room", ns, "room-1")
    mount(cs, "l1", "room-1", ns)
    mount(cs, "l2", "room-1", ns)
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"brightness": {"intent": 0.8}}}})
    for lamp in ("l1", "l2"):
        # the room's driver divides the intent; the lamp's driver makes it its status
        wait_for(
            lambda lamp=lamp: lamp_brightness(cs, ns, lamp) == (0.4, 0.4), 30, f"{lamp} at 0.4"
        )
    for lamp in ("l1", "l2"):
        wait_for(
            lambda lamp=lamp: (
                replica(cs, ROOMS, ns, "room-1", LAMPS, lamp)
                .get("spec", {})
                .get("control", {})
                .get("brightness", {})
                .get("status")
                == 0.4
            ),
            30,
            f"room-1's replica of {lamp} to show status 0.4",
        )
    wait_for(
        lambda: spec_at(cs, ROOMS, ns, "room-1", "control", "brightness", "status") == 0.8,
        30,
        "room status 0.8",
    )
    entry = replica(cs, ROOMS, ns, "room-1", LAMPS, "l1")
    assert entry["generation"] == cs.get(LAMPS, ns, "l1")["metadata"]["generation"]
    assert entry["mode"] == "hide" and entry["status"] == "active"
    counts = dict(
        (labels["direction"], value)
        for labels, value in cs.manager.metrics()["digi_mount_propagation_seconds_count"]
    )
    assert counts["down"] > 0 and counts["up"] > 0


def test_building_room_lamp(cs: CompositionSpace, namespace: str) -> None:
    ns = namespace
    run(cs, "lamp", ns, "l1", "l2")
    run(cs, "room", ns, "room-1")
    run(cs, "building", ns, "hq")
    mount(cs, "l1", "room-1", ns)
    mount(cs, "l2", "room-1", ns)
    mount(cs, "room-1", "hq", ns)
    cs.client.patch(BUILDINGS, ns, "hq", {"spec": {"control": {"brightness": {"intent": 0.6}}}})
    wait_for(
        lambda: spec_at(cs, ROOMS, ns, "room-1", "control", "brightness", "intent") == 0.6,
        30,
        "room intent",
    )
    for lamp in ("l1", "l2"):
        wait_for(
            lambda lamp=lamp: lamp_brightness(cs, ns, lamp) == (0.3, 0.3), 30, f"{lamp} at 0.3"
        )
    wait_for(
        lambda: spec_at(cs, BUILDINGS, ns, "hq", "control", "brightness", "status") == 0.6,
        30,
        "hq status",
    )
    room_replica = replica(cs, BUILDINGS, ns, "hq", ROOMS, "room-1")
    assert "mount" not in room_replica["spec"]  # hide: the room's own mounts stay out of hq


def test_yield_stops_down_keeps_up_and_activate_restores(
    cs: CompositionSpace, namespace: str
) -> None:
    ns = namespace
    run(cs, "lamp", ns, "l1", "l2")
    run(cs, "room", ns, "room-1")
    mount(cs, "l1", "room-1", ns)
    mount(cs, "l2", "room-1", ns)
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"brightness": {"intent": 0.4}}}})
    wait_for(lambda: lamp_brightness(cs, ns, "l1") == (0.2, 0.2), 30, "l1 at 0.2")

    code, out = cs.digi("yield", "l1", "room-1", "-n", ns)
    assert code == 0, out
    wait_for(
        lambda: replica(cs, ROOMS, ns, "room-1", LAMPS, "l1").get("status") == "inactive",
        10,
        "yielded",
    )
    # the lamp's own change still flows up...
    cs.client.patch(LAMPS, ns, "l1", {"spec": {"control": {"brightness": {"intent": 0.9}}}})
    wait_for(
        lambda: (
            replica(cs, ROOMS, ns, "room-1", LAMPS, "l1")["spec"]["control"]["brightness"]
            == {"intent": 0.9, "status": 0.9}
        ),
        30,
        "l1's own change in room-1's replica",
    )
    # ...but the room's writes into its replica of l1 no longer reach l1
    cs.client.patch(
        ROOMS,
        ns,
        "room-1",
        {"spec": {"mount": {str(LAMPS): {f"{ns}/l1": {"spec": {"meta": {"wattage": 20}}}}}}},
    )
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"brightness": {"intent": 0.8}}}})
    wait_for(lambda: lamp_brightness(cs, ns, "l2") == (0.8, 0.8), 30, "l2 (still active) at 0.8")
    assert lamp_brightness(cs, ns, "l1") == (0.9, 0.9)
    assert spec_at(cs, LAMPS, ns, "l1", "meta", "wattage") == 12

    code, out = cs.digi("activate", "l1", "room-1", "-n", ns)
    assert code == 0, out
    # the room divides among both lamps again, and its pending replica write arrives
    for lamp in ("l1", "l2"):
        wait_for(
            lambda lamp=lamp: lamp_brightness(cs, ns, lamp) == (0.4, 0.4), 30, f"{lamp} at 0.4"
        )
    wait_for(lambda: spec_at(cs, LAMPS, ns, "l1", "meta", "wattage") == 20, 30, "pending write")


def test_yield_policy_hands_lamps_over_and_back(cs: CompositionSpace, namespace: str) -> None:
    ns = namespace
    run(cs, "lamp", ns, "l1", "l2")
    run(cs, "room", ns, "room-1", "emergency")
    for lamp in ("l1", "l2"):
        mount(cs, lamp, "room-1", ns)
        out = mount(cs, lamp, "emergency", ns)
        assert "inactive" in out  # room-1 already writes it
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"brightness": {"intent": 0.2}}}})
    cs.client.patch(ROOMS, ns, "emergency", {"spec": {"control": {"brightness": {"intent": 2.0}}}})
    wait_for(lambda: lamp_brightness(cs, ns, "l1") == (0.1, 0.1), 30, "room-1 drives l1")
    policy = {
        "apiVersion": "digi.dev/v1",
        "kind": "YieldPolicy",
        "metadata": {"name": "takeover", "namespace": ns},
        "spec": {
            "source": "Room/room-1",
            "target": "Room/emergency",
            "condition": '.source.spec.control.mode.intent == "emergency"',
        },
    }
    assert cs.apply(policy).returncode == 0
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"mode": {"intent": "emergency"}}}})
    for lamp in ("l1", "l2"):
        wait_for(
            lambda lamp=lamp: lamp_brightness(cs, ns, lamp) == (1.0, 1.0),
            30,
            f"emergency drives {lamp}",
        )
        assert replica(cs, ROOMS, ns, "room-1", LAMPS, lamp)["status"] == "inactive"
    assert (
        cs.get(GVR("digi.dev", "v1", "yieldpolicies"), ns, "takeover")["status"]["holding"] is True
    )
    cs.client.patch(ROOMS, ns, "room-1", {"spec": {"control": {"mode": {"intent": None}}}})
    for lamp in ("l1", "l2"):
        wait_for(
            lambda lamp=lamp: lamp_brightness(cs, ns, lamp) == (0.1, 0.1),
            30,
            f"room-1 drives {lamp} again",
        )
        assert replica(cs, ROOMS, ns, "emergency", LAMPS, lamp)["status"] == "inactive"


def test_yield_policy_is_edge_triggered_and_leaves_a_third_writer_alone(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    """§5.4: the policy acts when its condition becomes true and when it turns false, not on
    every event: a manual yield while the condition stays false survives. A child a third
    parent writes is not activated under either end (the mounter would yield it at once)."""
    ns = namespace
    policies = GVR("digi.dev", "v1", "yieldpolicies")
    for name in ("src", "tgt", "third", "x", "y", "z"):
        cs.client.create(NODES, ns, node(name, ns))
    mount(cs, "z", "third", ns)
    for child in ("x", "y", "z"):
        mount(cs, child, "src", ns)
        mount(cs, child, "tgt", ns)

    def status(parent: str, child: str) -> Any:
        return spec_at(cs, NODES, ns, parent, "mount", str(NODES), f"{ns}/{child}", "status")

    def statuses() -> dict[str, tuple[Any, Any, Any]]:
        return {c: (status("src", c), status("tgt", c), status("third", c)) for c in "xyz"}

    def policer_reconciles() -> float:
        samples = cs.manager.metrics()["controller_runtime_reconcile_total"]
        return sum(v for labels, v in samples if labels["controller"] == "policer")

    policy = {
        "apiVersion": "digi.dev/v1",
        "kind": "YieldPolicy",
        "metadata": {"name": "edge", "namespace": ns},
        "spec": {
            "source": "Node/src",
            "target": "Node/tgt",
            "condition": '.source.spec.meta.mode == "emergency"',
        },
    }
    assert cs.apply(policy).returncode == 0
    wait_for(
        lambda: (cs.get(policies, ns, "edge").get("status") or {}).get("holding") is False,
        30,
        "the policy to act on its false condition",
    )
    code, out = cs.digi("yield", "x", "src", "-n", ns)
    assert code == 0, out
    for end in ("src", "tgt"):  # unrelated events: the policer evaluates its condition again
        before = policer_reconciles()
        cs.client.patch(NODES, ns, end, {"spec": {"meta": {"note": "unrelated"}}})
        wait_for(lambda b=before: policer_reconciles() > b, 30, f"the policer to see {end}'s event")
    assert statuses() == {
        "x": ("inactive", "inactive", None),  # the manual yield stands
        "y": ("active", "inactive", None),
        "z": ("inactive", "inactive", "active"),
    }

    cs.client.patch(NODES, ns, "src", {"spec": {"meta": {"mode": "emergency"}}})
    handed_over = {
        "x": ("inactive", "active", None),
        "y": ("inactive", "active", None),
        "z": ("inactive", "inactive", "active"),
    }
    wait_for(lambda: statuses() == handed_over, 30, "the hand-over to tgt")
    assert cs.get(policies, ns, "edge")["status"]["holding"] is True
    cs.client.patch(NODES, ns, "src", {"spec": {"meta": {"mode": None}}})
    back = {
        "x": ("active", "inactive", None),
        "y": ("active", "inactive", None),
        "z": ("inactive", "inactive", "active"),
    }
    wait_for(lambda: statuses() == back, 30, "the hand-back to src")
    message = cs.get(policies, ns, "edge")["status"]["conditions"][0]["message"]
    assert "left with their active parent: z (third)" in message
    for parent in ("src", "tgt"):
        events = cs.client.list(
            GVR("", "v1", "events"), ns, field_selector=f"involvedObject.name={parent}"
        )["items"]
        assert not [e["message"] for e in events if e["reason"] == "AutoYielded"]


@pytest.fixture
def nodes(cs: CompositionSpace) -> GVR:
    gvr = cs.ensure_kind(node_crd())
    cs.wait_webhook_covers(gvr)
    return gvr


def test_loop_and_diamond_refused_from_cli_and_kubectl(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    ns = namespace
    for name in ("home-1", "room-1", "room-2", "lamp-1"):
        cs.client.create(NODES, ns, node(name, ns))
    mount(cs, "room-1", "home-1", ns)
    mount(cs, "room-2", "home-1", ns)
    mount(cs, "lamp-1", "room-2", ns)

    code, out = cs.digi("mount", "home-1", "room-1", "-n", ns)
    assert code != 0
    assert "mounting home-1 under room-1 would close a loop: room-1 → home-1 → room-1" in out
    r = cs.apply(node("room-1", ns, mounts("home-1", ns=ns)))
    assert r.returncode != 0
    assert "would close a loop: room-1 → home-1 → room-1" in r.stderr

    code, out = cs.digi("mount", "lamp-1", "room-1", "-n", ns)
    assert code != 0
    assert "home-1 → room-1 → lamp-1 and home-1 → room-2 → lamp-1" in out
    r = cs.apply(node("room-1", ns, mounts("lamp-1", ns=ns)))
    assert r.returncode != 0
    assert "would make a diamond" in r.stderr and "home-1 → room-2 → lamp-1" in r.stderr
    assert not (spec_at(cs, NODES, ns, "room-1", "mount") or {})


def test_second_active_parent_becomes_inactive_from_cli_and_kubectl(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    ns = namespace
    for name in ("a", "b", "c", "x"):
        cs.client.create(NODES, ns, node(name, ns))
    mount(cs, "x", "a", ns)
    out = mount(cs, "x", "b", ns)
    assert "inactive" in out and "a already writes it" in out
    assert cs.get(NODES, ns, "b")["spec"]["mount"][str(NODES)][f"{ns}/x"]["status"] == "inactive"
    assert cs.apply(node("c", ns, mounts("x", ns=ns))).returncode == 0  # stored as active...
    wait_for(
        lambda: spec_at(cs, NODES, ns, "c", "mount", str(NODES), f"{ns}/x", "status") == "inactive",
        30,
        "the mounter to yield c's mount of x",
    )
    events = cs.client.list(GVR("", "v1", "events"), ns, field_selector="involvedObject.name=c")[
        "items"
    ]
    assert any(
        e["reason"] == "AutoYielded" and "x already has an active parent a" in e["message"]
        for e in events
    )
    # the writer still propagates; the yielded parents only read
    cs.client.patch(
        NODES,
        ns,
        "c",
        {"spec": {"mount": {str(NODES): {f"{ns}/x": {"spec": {"meta": {"v": "from-c"}}}}}}},
    )
    cs.client.patch(
        NODES,
        ns,
        "a",
        {"spec": {"mount": {str(NODES): {f"{ns}/x": {"spec": {"meta": {"w": "from-a"}}}}}}},
    )
    wait_for(lambda: spec_at(cs, NODES, ns, "x", "meta", "w") == "from-a", 30, "a's write on x")
    assert spec_at(cs, NODES, ns, "x", "meta", "v") is None


def test_pipe_between_ports_the_kinds_do_not_declare_is_refused(cs: CompositionSpace, namespace: str) -> None:
    run(cs, "lamp", namespace, "pl1", "pl2")  # a digivice: control attributes, no data ports
    code, out = cs.digi("pipe", "pl1.output.x", "pl2.input.y", "-n", namespace)
    assert code != 0
    assert "pl1 (Lamp) has no data.output.x: its kind does not declare it" in out
    assert "data: {output: {x: <type>}}" in out
    assert not cs.client.list(SYNC_GVR, namespace)["items"], "nothing was created"


def test_sync_and_match_bindings(cs: CompositionSpace, namespace: str, nodes: GVR) -> None:
    ns = namespace
    cs.client.create(NODES, ns, node("cam", ns, {"data": {"output": {"objects": ["cup"]}}}))
    cs.client.create(NODES, ns, node("det", ns, {"data": {"input": {}}}))
    code, out = cs.digi("pipe", "cam.output.objects", "det.input.objects", "-n", ns)
    assert code == 0, out
    wait_for(
        lambda: spec_at(cs, NODES, ns, "det", "data", "input", "objects") == ["cup"],
        30,
        "pipe delivers",
    )
    cs.client.patch(NODES, ns, "cam", {"spec": {"data": {"output": {"objects": ["cup", "pen"]}}}})
    wait_for(
        lambda: spec_at(cs, NODES, ns, "det", "data", "input", "objects") == ["cup", "pen"],
        30,
        "pipe follows",
    )
    cs.client.patch(NODES, ns, "det", {"spec": {"data": {"input": {"objects": ["tampered"]}}}})
    wait_for(
        lambda: spec_at(cs, NODES, ns, "det", "data", "input", "objects") == ["cup", "pen"],
        30,
        "match restores",
    )
    code, out = cs.digi("unpipe", "cam.output.objects", "det.input.objects", "-n", ns)
    assert code == 0, out
    wait_for(
        lambda: "objects" not in (spec_at(cs, NODES, ns, "det", "data", "input") or {}),
        30,
        "unpipe clears",
    )

    cs.client.create(NODES, ns, node("left", ns, {"obs": {"t": {"v": 1, "unit": "C"}}}))
    cs.client.create(NODES, ns, node("right", ns, {}))
    binding = {
        "apiVersion": "digi.dev/v1",
        "kind": "Sync",
        "metadata": {"name": "lr", "namespace": ns},
        "spec": {
            "source": "Node/left.spec.obs.t",
            "target": "Node/right.spec.obs.t",
            "mode": "sync",
        },
    }
    assert cs.apply(binding).returncode == 0
    wait_for(
        lambda: spec_at(cs, NODES, ns, "right", "obs", "t") == {"v": 1, "unit": "C"},
        30,
        "sync initial",
    )
    cs.client.patch(NODES, ns, "right", {"spec": {"obs": {"t": {"v": 2, "unit": None}}}})
    wait_for(
        lambda: spec_at(cs, NODES, ns, "left", "obs", "t") == {"v": 2}, 30, "sync target → source"
    )
    cs.client.patch(NODES, ns, "left", {"spec": {"obs": {"t": {"v": 3}}}})
    wait_for(
        lambda: spec_at(cs, NODES, ns, "right", "obs", "t") == {"v": 3}, 30, "sync source → target"
    )
    cs.client.delete(GVR("digi.dev", "v1", "syncs"), ns, "lr")
    wait_for(
        lambda: cs.client.get_or_none(GVR("digi.dev", "v1", "syncs"), ns, "lr") is None,
        30,
        "sync deleted",
    )
    assert spec_at(cs, NODES, ns, "right", "obs", "t") == {"v": 3}  # only match bindings clear


def test_sync_keeps_a_quick_target_edit(cs: CompositionSpace, namespace: str, nodes: GVR) -> None:
    """A target edit right after the syncer copied the source must win (it is the newer
    change), even while the syncer's cache still shows the previous lastValue or the
    previous target: the syncer decides its writes on fresh state."""
    ns = namespace
    cs.client.create(NODES, ns, node("left", ns, {"obs": {"v": 0}}))
    cs.client.create(NODES, ns, node("right", ns, {}))
    binding = {
        "apiVersion": "digi.dev/v1",
        "kind": "Sync",
        "metadata": {"name": "quick", "namespace": ns},
        "spec": {"source": "Node/left.spec.obs.v", "target": "Node/right.spec.obs.v", "mode": "sync"},
    }
    assert cs.apply(binding).returncode == 0
    wait_for(lambda: spec_at(cs, NODES, ns, "right", "obs", "v") == 0, 30, "sync initial")
    # Edit the target the moment the syncer's copy lands (from a watch, not by polling), so the
    # syncer's next reconcile runs while its own status write may still be on the way to it.
    # Each copy is edited once: a reverted edit stays reverted and the wait below fails.
    stream = cs.client.watch(
        NODES, ns, resource_version=cs.client.list(NODES, ns)["metadata"]["resourceVersion"],
        timeout_seconds=300,
    )
    edited: set[int] = set()

    def edit_each_copy_at_once() -> None:
        with contextlib.suppress(urllib3.exceptions.ProtocolError):  # the stream closed below
            for event in stream:
                obj = event.get("object") or {}
                v = ((obj.get("spec") or {}).get("obs") or {}).get("v")
                mine = obj.get("metadata", {}).get("name") == "right"
                if mine and isinstance(v, int) and v > 0 and v not in edited:
                    edited.add(v)
                    cs.client.patch(NODES, ns, "right", {"spec": {"obs": {"v": -v}}})

    editor = threading.Thread(target=edit_each_copy_at_once, daemon=True)
    editor.start()
    try:
        for i in range(1, 21):
            cs.client.patch(NODES, ns, "left", {"spec": {"obs": {"v": i}}})
            wait_for(
                lambda i=i: (
                    spec_at(cs, NODES, ns, "left", "obs", "v")
                    == spec_at(cs, NODES, ns, "right", "obs", "v")
                    == -i
                ),
                15,
                f"the target's edit {-i} reaching left and staying on right",
            )
    finally:
        stream.close()


def test_graph_api_cli_and_metrics(cs: CompositionSpace, namespace: str, nodes: GVR) -> None:
    ns = namespace
    for name in ("p", "q", "k"):
        cs.client.create(NODES, ns, node(name, ns))
    mount(cs, "k", "p", ns)
    mount(cs, "k", "q", ns)
    code, out = cs.digi("graph", "-n", ns)
    assert code == 0
    assert out.splitlines() == [
        "p (Node)",
        "└── k (Node)",
        "q (Node)",
        "└── k (Node) [inactive]",
    ]

    def edges() -> list[tuple[str, str, str]]:
        return sorted(
            (e["parent"]["name"], e["child"]["name"], e["status"])
            for e in cs.graph()["edges"]
            if e["parent"]["namespace"] == ns
        )

    wait_for(lambda: edges() == [("p", "k", "active"), ("q", "k", "inactive")], 30, "graph API")
    samples = cs.manager.metrics()
    assert {s[0]["status"] for s in samples["digi_graph_edges"]} >= {"active", "inactive"}
    assert samples["digi_graph_nodes"][0][1] >= 3


def test_webhook_down_does_not_brick_and_restart_revalidates(
    cs: CompositionSpace, namespace: str, nodes: GVR, tmp_path: Path
) -> None:
    """failurePolicy Ignore: with the manager stopped writes go through; on start the
    manager reports the loop that slipped in and carries no data over its closing edge."""
    ns = namespace
    for name in ("u", "v"):
        cs.client.create(NODES, ns, node(name, ns))
    mount(cs, "v", "u", ns)
    cs.stop()
    try:
        r = cs.apply(node("v", ns, {**mounts("u", ns=ns), "meta": {"x": 1}}))
        assert r.returncode == 0, r.stderr
    finally:
        cs.start()
    wait_for(
        lambda: any(
            v["parent"] == "v" and v["child"] == "u" and "close a loop: v → u → v" in v["message"]
            for v in cs.graph()["violations"]
        ),
        30,
        "the restarted manager to report the loop",
    )
    events = cs.client.list(GVR("", "v1", "events"), ns, field_selector="involvedObject.name=v")[
        "items"
    ]
    assert any(e["reason"] == "MountRejected" and e["type"] == "Warning" for e in events)
    code, out = cs.digi("graph", "-n", ns)
    assert code == 0 and "u (Node) [rejected]" in out
    assert "generation" not in spec_at(cs, NODES, ns, "v", "mount", str(NODES), f"{ns}/u")


def test_generation_guard_across_a_manager_restart(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    """Without the last-synced state (lost with the process), the replica's generation decides:
    a replica that saw the child's current generation pushes its change down; a stale one
    is overwritten from the child."""
    ns = namespace
    for name in ("p", "x", "y"):
        cs.client.create(NODES, ns, node(name, ns, {"meta": {"v": 0}}))
    mount(cs, "x", "p", ns)
    mount(cs, "y", "p", ns)
    for child in ("x", "y"):
        wait_for(
            lambda child=child: (
                spec_at(cs, NODES, ns, "p", "mount", str(NODES), f"{ns}/{child}", "generation")
                == cs.get(NODES, ns, child)["metadata"]["generation"]
            ),
            30,
            f"p's replica of {child} in sync",
        )
    cs.stop()
    try:
        replica_edit = {"spec": {"meta": {"v": 1}}}
        cs.client.patch(
            NODES,
            ns,
            "p",
            {"spec": {"mount": {str(NODES): {f"{ns}/x": replica_edit, f"{ns}/y": replica_edit}}}},
        )
        cs.client.patch(
            NODES, ns, "y", {"spec": {"meta": {"v": 2}}}
        )  # y moves on: p's replica of y is stale
    finally:
        cs.start()
    wait_for(lambda: spec_at(cs, NODES, ns, "x", "meta", "v") == 1, 30, "p's write reaching x")
    wait_for(
        lambda: (
            spec_at(cs, NODES, ns, "p", "mount", str(NODES), f"{ns}/y", "spec", "meta", "v") == 2
        ),
        30,
        "y's newer state overwriting the stale replica",
    )
    assert spec_at(cs, NODES, ns, "y", "meta", "v") == 2


def test_concurrent_writers_converge_without_losing_child_state(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    """The child changes its own obs as fast as it can while the parent keeps writing its
    intent: the mounter's guarded writes meet 409s and retry on fresh state; the child's
    last obs is never reverted and the parent's last intent arrives."""
    ns = namespace
    cs.client.create(NODES, ns, node("p", ns))
    cs.client.create(
        NODES, ns, node("x", ns, {"obs": {"n": 0}, "control": {"level": {"intent": 0}}})
    )
    mount(cs, "x", "p", ns)
    wait_for(
        lambda: spec_at(cs, NODES, ns, "p", "mount", str(NODES), f"{ns}/x", "spec"), 30, "replica"
    )

    def child_writes() -> None:
        for i in range(1, 41):
            cs.client.patch(NODES, ns, "x", {"spec": {"obs": {"n": i}}})

    writer = threading.Thread(target=child_writes)
    writer.start()
    for j in range(1, 11):
        edit = {"spec": {"control": {"level": {"intent": j}}}}
        cs.client.patch(NODES, ns, "p", {"spec": {"mount": {str(NODES): {f"{ns}/x": edit}}}})
    writer.join()
    wait_for(
        lambda: spec_at(cs, NODES, ns, "x", "control", "level", "intent") == 10,
        30,
        "the last intent on x",
    )
    wait_for(
        lambda: (
            spec_at(cs, NODES, ns, "p", "mount", str(NODES), f"{ns}/x", "spec", "obs", "n") == 40
        ),
        30,
        "x's last obs in p's replica",
    )
    assert spec_at(cs, NODES, ns, "x", "obs", "n") == 40


def test_installer_owned_configuration_gets_only_its_rules_updated(cs: CompositionSpace) -> None:
    """The Helm chart's mode: the configuration calls a Service with the installer's CA;
    the manager only keeps the rules and match conditions current and leaves everything else alone."""
    name = "chart-like-webhook"
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "mount.digi.dev",
                "clientConfig": {
                    "service": {
                        "name": "digi-webhook",
                        "namespace": "digi-system",
                        "path": "/validate",
                        "port": 443,
                    },
                    "caBundle": "Q0E=",
                },
                "rules": [],
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
        ],
    }
    cs.client.create(VWC_GVR, None, body)
    try:
        update_webhook(cs.client, name, rules_for([GVR("unused.digi.dev", "v1", "things")]))
        (hook,) = cs.client.get(VWC_GVR, None, name)["webhooks"]
        assert hook["clientConfig"] == body["webhooks"][0]["clientConfig"]
        assert hook["matchConditions"] == MATCH_CONDITIONS  # the API server compiled the CEL
        assert hook["rules"] == [
            {
                "apiGroups": ["unused.digi.dev"],
                "apiVersions": ["v1"],
                "resources": ["things"],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
        ]
    finally:
        cs.client.delete(VWC_GVR, None, name)


def test_parent_created_with_its_mount_keeps_it_active_and_drives_the_child(
    cs: CompositionSpace, namespace: str
) -> None:
    """A room applied with `spec.mount` already in the manifest (how users write them)
    must not count its own edge as another active parent and yield to itself."""
    ns = namespace
    run(cs, "lamp", ns, "l1")
    room_dir = REPO / "digis" / "room"
    crd = load_kind(room_dir).crd()
    crd["metadata"].setdefault("labels", {})[DIGI_KIND_LABEL] = "true"
    cs.wait_webhook_covers(cs.ensure_kind(crd))
    room = render_cr((room_dir / "deploy" / "cr.yaml").read_text(), "r1", ns)
    room["metadata"]["annotations"] = {DRIVER_DIR_ANNOTATION: str(room_dir / "driver")}
    room["spec"]["control"]["brightness"]["intent"] = 0.8
    room["spec"]["mount"] = {str(LAMPS): {f"{ns}/l1": {"mode": "hide"}}}
    applied = cs.apply(room)
    assert applied.returncode == 0, applied.stderr

    wait_for(lambda: lamp_brightness(cs, ns, "l1") == (0.8, 0.8), 60, "l1 driven to 0.8 by r1")
    wait_for(
        lambda: replica(cs, ROOMS, ns, "r1", LAMPS, "l1").get("generation")
        == cs.get(LAMPS, ns, "l1")["metadata"]["generation"],
        30,
        "r1's replica of l1 to catch up",
    )
    assert replica(cs, ROOMS, ns, "r1", LAMPS, "l1")["status"] == "active"
    edges = [e for e in cs.graph()["edges"] if e["parent"]["name"] == "r1"]
    assert [(e["child"]["name"], e["status"], e["effective"]) for e in edges] == [
        ("l1", "active", "active")
    ]
    events = cs.client.list(GVR("", "v1", "events"), ns, field_selector="involvedObject.name=r1")
    assert not [e["message"] for e in events["items"] if e["reason"] == "AutoYielded"]


def test_only_writes_that_can_change_the_hierarchy_reach_the_webhook(
    cs: CompositionSpace, namespace: str, nodes: GVR
) -> None:
    """The API server evaluates the webhook's matchConditions: a create, a new child, or a
    changed mode/status is reviewed; intent/status writes and replica updates are not."""
    ns = namespace

    def reviews() -> float:
        samples = cs.manager.metrics().get("controller_runtime_webhook_requests_total", [])
        return sum(v for labels, v in samples if labels["webhook"] == "/validate")

    def reviewed(write: Any) -> bool:
        before = reviews()
        write()
        return reviews() > before  # the webhook answers before the write returns

    assert reviewed(lambda: cs.client.create(NODES, ns, node("p", ns)))
    cs.client.create(NODES, ns, node("c", ns))
    assert reviewed(lambda: mount(cs, "c", "p", ns))
    wait_for(lambda: spec_at(cs, NODES, ns, "p", "mount", str(NODES), f"{ns}/c", "generation"), 30,
             "c's replica in p")
    # Not reviewed: a driver-style write, and a replica write that keeps the mount's entries.
    assert not reviewed(lambda: cs.client.patch(NODES, ns, "c", {"spec": {"obs": {"n": 1}}}))
    entry = f"{ns}/c"
    assert not reviewed(lambda: cs.client.patch(
        NODES, ns, "p", {"spec": {"mount": {str(NODES): {entry: {"spec": {"meta": {"x": 1}}}}}}}))
    # Reviewed again: yield changes the entry's status.
    assert reviewed(lambda: cs.digi("yield", "c", "p", "-n", ns))
    r = cs.apply(node("p", ns, {"mount": {str(NODES): {entry: {"mode": "bogus"}}}}))
    assert r.returncode != 0 and "mode is 'bogus'" in r.stderr
