"""Unit tests of the syncer's pure parts: AURIs, the equalizing merge patch, the sync plan.

The bindings' behaviour against the real API server is in tests/test_composition_space.py.
"""

from __future__ import annotations

import pytest

from controllers.syncer import Auri, AuriError, parse_auri, plan, set_path_patch


def test_auri_forms() -> None:
    assert parse_auri("l1.spec.obs.reason") == Auri("l1", ("spec", "obs", "reason"))
    assert parse_auri("Lamp/l1.spec.obs.reason").kind == "Lamp"
    full = parse_auri("/mock.digi.dev/v1/Lamp/ns1/l1.spec.data.output.x")
    assert (full.group, full.version, full.kind, full.namespace, full.name) == (
        "mock.digi.dev",
        "v1",
        "Lamp",
        "ns1",
        "l1",
    )
    assert parse_auri("Lamp/ns1/l1.data.input.y").path == ("spec", "data", "input", "y")
    assert str(full) == "mock.digi.dev/v1/Lamp/ns1/l1.spec.data.output.x"


@pytest.mark.parametrize("bad", ["l1", "a/b/c/l1.spec.x", ".spec.x"])
def test_bad_auris_say_how_to_write_one(bad: str) -> None:
    with pytest.raises(AuriError, match=r"AURI|attribute path"):
        parse_auri(bad)


def test_patch_makes_the_target_equal_not_merged() -> None:
    obj = {"spec": {"data": {"input": {"y": {"a": 1, "b": 2}, "z": 0}}}}
    patch = set_path_patch(obj, ("spec", "data", "input", "y"), {"a": 3})
    assert patch == {"spec": {"data": {"input": {"y": {"a": 3, "b": None}}}}}
    scalar = set_path_patch(obj, ("spec", "data", "input", "z"), [1, 2])
    assert scalar == {"spec": {"data": {"input": {"z": [1, 2]}}}}
    missing = set_path_patch({"spec": {}}, ("spec", "data", "input", "y"), 5)
    assert missing == {"spec": {"data": {"input": {"y": 5}}}}


def test_plan_copies_the_side_that_changed_since_the_last_agreement() -> None:
    agreed = {"status": {"hasValue": True, "lastValue": 1}}
    assert plan("sync", agreed, 1, 1) == (1, None)
    assert plan("sync", agreed, 2, 1) == (2, "target")
    assert plan("sync", agreed, 1, 3) == (3, "source")
    assert plan("sync", agreed, 2, 3) == (2, "target")  # both changed: the source wins
    assert plan("match", agreed, 1, 3) == (1, "target")  # match: target edits are overwritten
    assert plan("sync", {}, 2, 3) == (2, "target")  # no agreement yet: the source's value
