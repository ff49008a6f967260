"""Views, util helpers and merge patches of the driver library (pure functions, no server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digi import util
from digi.view import CleanView, DotView, KindView, ModelView, NameView, TypeView

LAMPS = "mock.digi.dev/v1/lamps"
FANS = "other.digi.dev/v2/fans"


@pytest.fixture(autouse=True)
def room_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUP", "mock.digi.dev")
    monkeypatch.setenv("VERSION", "v1")


def room() -> dict[str, Any]:
    return {
        "control": {"brightness": {"intent": 0.8, "status": 0}, "mode": {"intent": "sleep", "status": "sleep"}},
        "mount": {
            LAMPS: {
                "default/lamp-test": {"mode": "hide", "status": "active", "generation": 2,
                                      "spec": {"control": {"power": {"intent": "on"}}}},
                "lab/l2": {"spec": {"control": {"power": {"intent": "off"}}, "meta": {"x": 1}}},
            },
            FANS: {"default/f1": {"spec": {"control": {"speed": {"intent": 1}},
                                           "mount": {LAMPS: {"default/inner": {"spec": {"obs": {"a": 1}}}}}}}},
        },
    }


def test_name_view_round_trips_into_mounts_and_root() -> None:
    v = room()
    with ModelView(v) as mv:
        assert set(mv) == {"root", "lamp-test", "lab/l2", "f1"}
        mv["lamp-test"]["control"]["power"]["intent"] = "off"
        mv["root"]["control"]["mode"]["status"] = "away"
        del mv["lab/l2"]["meta"]
    assert v["mount"][LAMPS]["default/lamp-test"]["spec"]["control"]["power"]["intent"] == "off"
    assert v["mount"][LAMPS]["default/lamp-test"]["generation"] == 2
    assert v["control"]["mode"]["status"] == "away"
    assert "meta" not in v["mount"][LAMPS]["lab/l2"]["spec"]
    assert NameView is ModelView


def test_type_view_groups_by_kind_and_trims_own_group_version() -> None:
    v = room()
    with TypeView(v) as tv:
        assert set(tv) == {"root", "lamps", FANS}
        tv["lamps"]["lamp-test"]["control"]["power"]["intent"] = "off"
        tv[FANS]["f1"]["control"]["speed"]["intent"] = 3
    assert v["mount"][LAMPS]["default/lamp-test"]["spec"]["control"]["power"]["intent"] == "off"
    assert v["mount"][FANS]["default/f1"]["spec"]["control"]["speed"]["intent"] == 3
    assert KindView is TypeView


def test_type_and_dot_view_chain() -> None:
    v = room()
    with TypeView(v) as tv, DotView(tv) as dv:
        dv.lamps.lamp_test.control.power.intent = "off"
        dv.root.control.brightness.status = 0.5
        dv.lamps.lab_l2.meta.y = {"nested": True}
    assert v["mount"][LAMPS]["default/lamp-test"]["spec"]["control"]["power"]["intent"] == "off"
    assert v["control"]["brightness"]["status"] == 0.5
    assert v["mount"][LAMPS]["lab/l2"]["spec"]["meta"] == {"x": 1, "y": {"nested": True}}


def test_dot_view_maps_unsafe_keys_back() -> None:
    v = room()
    with DotView(v) as dv:
        replica = dv.mount.mock_digi_dev_v1_lamps.default_lamp_test
        replica.spec.control.power.intent = "dim"
        assert not hasattr(dv, "missing")
    assert v["mount"][LAMPS]["default/lamp-test"]["spec"]["control"]["power"]["intent"] == "dim"
    assert set(v["mount"][LAMPS]) == {"default/lamp-test", "lab/l2"}


def test_dot_view_reaches_objects_inside_lists() -> None:
    v = {"obs": {"objects": [{"class": "human", "name": "alice"}]}}
    with DotView(v) as dv:
        assert dv.obs.objects[0].name == "alice"
        dv.obs.objects[0].name = "bob"
    assert v == {"obs": {"objects": [{"class": "human", "name": "bob"}]}}
    assert type(v["obs"]["objects"][0]) is dict


def test_clean_view_reduces_replicas_to_specs_recursively_and_writes_back() -> None:
    v = room()
    with CleanView(v, trim_mount=False) as cv:
        assert cv["mount"]["lamps"]["lamp-test"] == {"control": {"power": {"intent": "on"}}}
        assert cv["mount"][FANS]["f1"]["mount"]["lamps"]["inner"] == {"obs": {"a": 1}}
        cv["mount"][FANS]["f1"]["mount"]["lamps"]["inner"]["obs"]["a"] = 2
        cv["control"]["mode"]["intent"] = "work"
    assert v["mount"][FANS]["default/f1"]["spec"]["mount"][LAMPS]["default/inner"]["spec"]["obs"]["a"] == 2
    assert v["control"]["mode"]["intent"] == "work"


def test_clean_view_trim_mount_lists_names_and_ignores_edits_to_them() -> None:
    v = room()
    before = copy.deepcopy(v)
    clean = CleanView(v).m()
    assert clean["lamps"] == ["lamp-test", "lab/l2"] and "mount" not in clean
    with CleanView(v) as cv:
        cv["lamps"].append("ghost")
    assert v == before


def test_util_get_update_and_quoted_paths() -> None:
    v = room()
    assert util.get(v, f"mount.'{LAMPS}'.'default/lamp-test'.spec.control.power.intent") == "on"
    assert util.get(v, "control.nothing.here", 5) == 5
    util.update(v, "obs.a.b", 1)
    assert v["obs"] == {"a": {"b": 1}}
    util.update(v, "x.y", 1, create=False)
    assert "x" not in v
    util.deep_set_all(v["mount"][LAMPS], "spec.meta.managed", True)
    assert all(m["spec"]["meta"]["managed"] for m in v["mount"][LAMPS].values())
    assert util.mount_size(v["mount"]) == 3 and util.mount_size(v["mount"], {LAMPS}) == 2
    assert util.mount_size(v["mount"], cond=lambda m: m.get("status") == "active") == 1


def test_util_names_and_kinds() -> None:
    assert util.gvr_of("Lamp") == LAMPS and util.gvr_of("occupancy") == "mock.digi.dev/v1/occupancies"
    assert util.gvr_of(FANS) == FANS and util.parse_gvr("lamps") == ("mock.digi.dev", "v1", "lamps")
    assert util.spaced_name("l1", "default") == "default/l1"
    assert util.trim_default_space("default/l1") == "l1" and util.trim_default_space("lab/l1") == "lab/l1"
    assert util.parse_spaced_name("lab/l1") == ("l1", "lab") and util.parse_spaced_name("l1") == ("l1", "default")


def test_merge_patch_writes_nulls_for_deletions() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": True}
    new = {"a": 1, "b": {"c": 2}, "e": [1], "f": 1, "g": {"h": None}}
    assert util.merge_patch(old, new) == {"b": {"d": None}, "e": [1], "f": 1, "g": {"h": None}}
    assert util.merge_patch(old, old) == {}
    assert util.merge_patch({"n": 1}, {"n": 1.0}) == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=10,
)
# Merge patches cannot express a null value inside a model, so models hold none.
models = st.dictionaries(st.text(max_size=2), json_values, max_size=4).map(
    lambda d: util.apply_merge_patch({}, d))


@given(models, models)
def test_merge_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert util.apply_merge_patch(old, util.merge_patch(old, new)) == new
