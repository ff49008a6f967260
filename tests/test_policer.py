"""Unit tests of the policer's condition evaluation (jq over {source, target}).

Hand-over and hand-back against the real API server are in tests/test_composition_space.py.
"""

from __future__ import annotations

import pytest

from controllers.policer import holds, parse_ref


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
