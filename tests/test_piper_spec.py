"""Deriving pipelines from digi and Pipelet objects (pure: no lake, no API server)."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.piper.spec import (
    Source,
    SpecError,
    digi_pipelines,
    kind_matches,
    pipelet_pipelines,
)

LAMPS, PLUGS = "mock.digi.dev/v1/lamps", "mock.digi.dev/v1/plugs"


def room(ns: str = "home", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "room", "namespace": ns}, "spec": spec}


def test_egress_reads_main_and_writes_its_branch() -> None:
    obj = room("default", egress={"energy": {"flow": "watt | cut watt"}, "raw": {"driver_managed": True}})
    [egress], errors = digi_pipelines("Room", obj, lambda: None)
    assert errors == []
    assert egress.config.id == "egress:default/room/energy"
    assert egress.config.dst == Source("room", "energy") and egress.config.flow == "watt | cut watt"
    assert list(egress.resolve()) == [Source("room", "main")]


def test_ingress_sources_follow_the_current_mounts() -> None:
    obj = room(ingress={"all": {"sources": ["kind:any@energy", "meter@energy", "other/m2@e"],
                                "flow_agg": "watt:=sum(watt)", "patch_source": True},
                        "lamps": {"source": [{"kind": "Lamp", "egress": "energy"}]}})
    latest: dict[str, Any] = {"spec": {"mount": {LAMPS: {"home/l1": {}}, PLUGS: {"home/p1": {}}}}}
    (all_, lamps), _ = digi_pipelines("Room", obj, lambda: latest)
    assert all_.config.dst == Source("home_room") and all_.config.patch_source
    assert list(all_.resolve()) == sorted([Source("home_l1", "energy"), Source("home_p1", "energy"),
                                           Source("home_meter", "energy"), Source("other_m2", "e")])
    assert list(lamps.resolve()) == [Source("home_l1", "energy")]
    latest["spec"]["mount"][LAMPS]["home/l2"] = {}
    del latest["spec"]["mount"][PLUGS]
    assert list(lamps.resolve()) == [Source("home_l1", "energy"), Source("home_l2", "energy")]
    assert Source("home_p1", "energy") not in all_.resolve()


@pytest.mark.parametrize("selector", ["any", "lamp", "lamps", "Lamp", LAMPS])
def test_kind_selector_forms(selector: str) -> None:
    assert kind_matches(selector, LAMPS)
    assert not kind_matches("plug", LAMPS)
    assert kind_matches("occupancy", "mock.digi.dev/v1/occupancies")


def test_malformed_entries_name_the_field_and_do_not_stop_the_others() -> None:
    obj = room(ingress={"x": {"sources": ["l1"]}, "y": {"flow": "pass"}, "ok": {"sources": ["l1@e"]}},
               egress={"main": {}, "energy": {}})
    pipelines, errors = digi_pipelines("Room", obj, lambda: None)
    assert sorted(p.config.id for p in pipelines) == ["egress:home/room/energy", "ingress:home/room/ok"]
    messages = [str(e) for e in errors]
    assert messages[0].startswith("Room home/room spec.egress.main: 'main' is the branch egress reads from")
    assert messages[1] == ("Room home/room spec.ingress.x.sources[0]: 'l1' is not name@egress, "
                           "kind:<kind>@egress or kind:any@egress")
    assert messages[2].startswith("Room home/room spec.ingress.y: no sources")


def test_pipelet_one_pipeline_per_destination() -> None:
    obj = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"src": ["a@energy", "b"], "dst": ["c", "d@x"], "flow": "pass", "pause": True}}
    c, d = pipelet_pipelines(obj)
    assert (c.config.dst, d.config.dst) == (Source("c"), Source("d", "x"))
    assert list(c.resolve()) == [Source("a", "energy"), Source("b")]
    assert c.config.pause and c.owner == ("Pipelet", "ns", "p")
    with pytest.raises(SpecError, match="cannot feed itself"):
        pipelet_pipelines({"metadata": {"name": "p"}, "spec": {"src": ["a"], "dst": ["a@main"]}})


def test_a_bare_mount_key_means_the_parents_namespace() -> None:
    # The composition graph reads `l1` under a room in `home` as home/l1; the piper must read that
    # child's pool (home_l1), not the pool of a `default` digi called l1.
    obj = room("home", mount={LAMPS: {"l1": {}, "other/l2": {}}},
               ingress={"all": {"sources": ["kind:any@energy"]}})
    [ingress], _ = digi_pipelines("Room", obj, lambda: obj)
    assert list(ingress.resolve()) == [Source("home_l1", "energy"), Source("other_l2", "energy")]
    default_room = room("default", mount={LAMPS: {"l1": {}}}, ingress={"all": {"sources": ["kind:any@energy"]}})
    [ingress], _ = digi_pipelines("Room", default_room, lambda: None)
    assert list(ingress.resolve()) == [Source("l1", "energy")]
