"""Unit tests of the policer's condition evaluation (jq over {source, target}) and edge detection.

Hand-over and hand-back against the real API server are in tests/test_composition_space.py.
"""

from __future__ import annotations

import pytest

from controllers.policer import holds, is_due, parse_ref


def test_condition_reads_both_objects() -> None:
    source = {"spec": {"control": {"mode": {"intent": "emergency"}}}}
    target = {"spec": {"obs": {"armed": True}}}
    cond = '.source.spec.control.mode.intent == "emergency" and .target.spec.obs.armed'
    assert holds(cond, source, target)
    assert not holds(cond, {"spec": {}}, target)
    assert not holds(".source.spec.missing", source, target)  # null is false


def test_bad_condition_raises_value_error() -> None:
    with pytest.raises(ValueError):
        holds(".source ==", {}, {})


def test_refs() -> None:
    assert parse_ref("Room/ns/room-1").namespace == "ns"
    assert parse_ref("room-1").name == "room-1"


def _policy(generation: int, holding: object, observed: int | None) -> dict[str, object]:
    ready = {"type": "Ready", "status": "True", "observedGeneration": observed}
    return {"metadata": {"generation": generation}, "status": {"holding": holding, "conditions": [ready]}}


def test_the_policy_acts_on_edges_only() -> None:
    assert is_due({"metadata": {"generation": 1}}, False)  # a new policy establishes its state
    acted_true = _policy(2, True, 2)
    assert not is_due(acted_true, True) and is_due(acted_true, False)
    assert is_due(_policy(3, True, 2), True)  # a spec changed since it acted: act afresh
    assert is_due(_policy(2, None, 2), True) and is_due(_policy(2, None, 2), False)  # never acted
