"""Unit tests of the admission decisions (the same graph code the CLI uses).

The webhook's behaviour through a real kube-apiserver (kubectl apply) is in
tests/test_composition_space.py; here the stored digis are given as a list.
"""

from __future__ import annotations

from typing import Any

from controllers.admission import Admission, registration
from manager.types import GVR

ROOMS = GVR("mock.digi.dev", "v1", "rooms")
HOMES = GVR("mock.digi.dev", "v1", "homes")
LAMPS = GVR("mock.digi.dev", "v1", "lamps")


def obj(kind: str, name: str, mounts: dict[str, list[str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"control": {"power": {"intent": "on"}}}
    if mounts:
        spec["mount"] = {
            gvr: {f"default/{n}": {"mode": "hide", "status": "active"} for n in names}
            for gvr, names in mounts.items()
        }
    return {
        "apiVersion": "mock.digi.dev/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def review(gvr: GVR, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "operation": "UPDATE" if old else "CREATE",
            "namespace": "default",
            "resource": {"group": gvr.group, "version": gvr.version, "resource": gvr.plural},
            "object": new,
            "oldObject": old,
        },
    }


class Store:
    def __init__(self, *items: tuple[GVR, dict[str, Any]]) -> None:
        self.items = list(items)
        self.reads = 0

    def __call__(self) -> list[tuple[GVR, dict[str, Any]]]:
        self.reads += 1
        return self.items


def test_loop_refused_with_path_in_an_admission_response() -> None:
    home = obj("Home", "home-1", {str(ROOMS): ["room-1"]})
    room = obj("Room", "room-1")
    store = Store((HOMES, home), (ROOMS, room))
    new = obj("Room", "room-1", {str(HOMES): ["home-1"]})
    out = Admission(store).review(review(ROOMS, new, room))
    assert out["response"]["uid"] == "u-1"
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"] == (
        "mounting home-1 under room-1 would close a loop: room-1 → home-1 → room-1"
    )


def test_writes_that_add_no_edge_read_nothing() -> None:
    room = obj("Room", "room-1", {str(LAMPS): ["l1"]})
    store = Store((ROOMS, room))
    changed = obj("Room", "room-1", {str(LAMPS): ["l1"]})
    changed["spec"]["control"]["power"]["intent"] = "off"
    out = Admission(store).review(review(ROOMS, changed, room))
    assert out["response"]["allowed"] is True
    assert store.reads == 0


def test_malformed_entry_is_refused_naming_the_field() -> None:
    bad = obj("Room", "room-1")
    bad["spec"]["mount"] = {str(LAMPS): {"l1": {"status": "maybe"}}}
    out = Admission(Store()).review(review(ROOMS, bad, None))
    assert out["response"]["allowed"] is False
    assert "spec.mount.mock.digi.dev/v1/lamps.l1.status" in out["response"]["status"]["message"]


def test_second_parent_is_allowed_the_mounter_yields_it() -> None:
    store = Store((ROOMS, obj("Room", "room-1", {str(LAMPS): ["l1"]})), (LAMPS, obj("Lamp", "l1")))
    new = obj("Room", "room-2", {str(LAMPS): ["l1"]})
    assert Admission(store).review(review(ROOMS, new, None))["response"]["allowed"] is True


def test_registration_lists_the_digi_kinds_and_ignores_failures() -> None:
    vwc = registration("https://127.0.0.1:9443/validate", "Q0E=", [LAMPS, ROOMS, LAMPS])
    (hook,) = vwc["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["rules"] == [
        {
            "apiGroups": ["mock.digi.dev"],
            "apiVersions": ["v1"],
            "resources": ["lamps", "rooms"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:9443/validate", "caBundle": "Q0E="}
