"""The room and building drivers we ship, run by the real engine on an in-memory model.

(The same drivers against the real API server and mounter: tests/test_composition_space.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import digi.pool
from digi.engine.handlers import Registry
from tests.test_driver_compat import fresh_registry, load_driver
from tests.test_engine import Harness

REPO = Path(__file__).resolve().parents[1]
LAMPS = "mock.digi.dev/v1/lamps"
OCC = "mock.digi.dev/v1/occupancies"
SENSORS = "mock.digi.dev/v1/sensors"
ROOMS = "mock.digi.dev/v1/rooms"
__all__ = ["fresh_registry"]


def lamp(status: str = "active", **control: Any) -> dict[str, Any]:
    spec = {"control": {k: {"status": v} for k, v in control.items()}}
    return {"mode": "hide", "status": status, "generation": 1, "spec": spec}


def lamp_intents(h: Harness, name: str) -> dict[str, Any]:
    control = h.spec["mount"][LAMPS][name]["spec"]["control"]
    return {k: v.get("intent") for k, v in control.items()}


def test_room_divides_brightness_among_active_lamps_and_sums_status(
    fresh_registry: Registry,
) -> None:
    load_driver(REPO / "digis" / "room" / "driver" / "handler.py")
    h = Harness(
        fresh_registry,
        {
            "control": {"brightness": {"intent": 0.9}, "power": {"intent": "on"}},
            "mount": {
                LAMPS: {
                    "default/l1": lamp(brightness=0.1),
                    "default/l2": lamp(brightness=0.2),
                    "default/l3": lamp("inactive", brightness=0.4, power="on"),
                }
            },
        },
    )
    h.pump()
    assert lamp_intents(h, "default/l1") == {"brightness": 0.45, "power": "on"}
    assert lamp_intents(h, "default/l2") == {"brightness": 0.45, "power": "on"}
    assert lamp_intents(h, "default/l3") == {
        "brightness": None,
        "power": None,
    }  # yielded: not written
    assert h.spec["control"]["brightness"]["status"] == pytest.approx(0.7)  # what the lamps report
    assert h.spec["control"]["power"]["status"] == "on"


def test_room_modes_and_mode_status(fresh_registry: Registry) -> None:
    load_driver(REPO / "digis" / "room" / "driver" / "handler.py")
    h = Harness(
        fresh_registry,
        {
            "control": {"mode": {"intent": "work"}},
            "mount": {LAMPS: {"default/l1": lamp(brightness=0.1, power="off")}},
        },
    )
    h.pump()
    assert lamp_intents(h, "default/l1") == {"brightness": 1.0, "power": "on"}
    assert h.spec["control"]["mode"]["status"] == "undef"
    h.user(
        {
            "mount": {
                LAMPS: {
                    "default/l1": {
                        "spec": {
                            "control": {"brightness": {"status": 1.0}, "power": {"status": "on"}}
                        }
                    }
                }
            }
        }
    )
    assert h.spec["control"]["mode"]["status"] == "work"
    h.user({"control": {"mode": {"intent": "sleep"}}})
    assert lamp_intents(h, "default/l1")["power"] == "off"


def test_room_adaptive_rule(fresh_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(
        digi.pool, "load", lambda records, branch="main": loaded.append(list(records))
    )
    load_driver(REPO / "digis" / "room" / "driver" / "handler.py")
    sensor = {"status": "inactive", "spec": {"obs": {"light": 250.0, "event_ts": 100}}}
    motion = {"status": "inactive", "spec": {"obs": {"motion_detected": True, "event_ts": 100}}}
    h = Harness(
        fresh_registry,
        {
            "control": {"mode": {"intent": "adaptive"}},
            "obs": {"occupancy": False},
            "mount": {
                LAMPS: {"default/l1": lamp()},
                SENSORS: {"default/env": sensor},
                OCC: {"default/m": motion},
            },
        },
    )
    h.pump()
    assert lamp_intents(h, "default/l1") == {"power": "on", "brightness": 0.5}
    assert h.spec["mount"][LAMPS]["default/l1"]["spec"]["meta"]["event_ts"] == 100
    assert h.spec["obs"]["occupancy"] is True
    assert loaded == [[{"occupancy": True, "event_ts": 100}]]
    h.user(
        {
            "mount": {
                OCC: {"default/m": {"spec": {"obs": {"motion_detected": False, "event_ts": 160}}}}
            }
        }
    )
    # Row 160 has reached the motion sensor only: the room waits for the whole row.
    assert lamp_intents(h, "default/l1") == {"power": "on", "brightness": 0.5}
    assert len(loaded) == 1
    h.user(
        {"mount": {SENSORS: {"default/env": {"spec": {"obs": {"light": 250.0, "event_ts": 160}}}}}}
    )
    assert lamp_intents(h, "default/l1") == {"power": "off", "brightness": 0}
    assert loaded[-1] == [{"occupancy": False, "event_ts": 160}]


def test_building_passes_mode_and_divides_brightness(fresh_registry: Registry) -> None:
    load_driver(REPO / "digis" / "building" / "driver" / "handler.py")
    room = {
        "mode": "hide",
        "status": "active",
        "spec": {"control": {"brightness": {"status": 0.3}}},
    }
    h = Harness(
        fresh_registry,
        {
            "control": {"brightness": {"intent": 1.0}, "mode": {"intent": "work"}},
            "mount": {ROOMS: {"default/r1": room, "default/r2": room}},
        },
    )
    h.pump()
    control = h.spec["mount"][ROOMS]["default/r1"]["spec"]["control"]
    assert control["brightness"]["intent"] == 0.5 and control["mode"]["intent"] == "work"
    assert h.spec["control"]["brightness"]["status"] == pytest.approx(0.6)
    assert h.spec["control"]["mode"]["status"] == "undef"
