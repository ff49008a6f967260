"""Drivers written for the original Digi run unchanged on our engine.

Each driver is a module in the original's style — `import digi`,
`digi.on` decorators, `util.update` on mounts, `TypeView`/`DotView`, an
`if __name__ == '__main__': digi.run()` tail — loaded the way `python -m
digi.worker` loads it (minus the `__main__` run), then fed model events through
the engine with the in-process ModelClient (see test_engine.py for why that
seam is the right one). The model that comes out is checked.
"""

from __future__ import annotations

import runpy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digi import dbox
from digi.engine import Registry, default_registry
from digi.kinds import render_cr, scaffold
from tests.test_engine import Harness

LAMPS = "mock.digi.dev/v1/lamps"
REPO = Path(__file__).resolve().parents[1]

ROOM_DRIVER = '''
import digi
import digi.on as on
from digi import util
from digi.view import TypeView, DotView

lamp_gvr = "mock.digi.dev/v1/lamps"


@on.mount
@on.control
def do_lamps(parent, mounts):
    b = util.get(parent, "control.brightness.intent", 0)
    for _, lamp in mounts.get(lamp_gvr, {}).items():
        util.update(lamp, "spec.control.brightness.intent", b)
        util.update(lamp, "spec.control.power.intent", "on" if b > 0 else "off")


@on.mount("lamps", prio=1)
def do_status(parent):
    with TypeView(parent) as tv, DotView(tv) as dv:
        lamps = list(dv.lamps.values())
        statuses = [l.control.brightness.get("status", 0) for l in lamps]
        dv.root.control.brightness.status = sum(statuses) / len(statuses) if statuses else 0
    util.update(parent, "obs.lamps_on",
                sum(1 for l in lamps if l.control.power.get("status") == "on"))


@on.meta(prio=-1)
def disabled(meta):
    meta["touched"] = True


if __name__ == "__main__":
    digi.run()
'''


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """`digi.on` registers into the process-wide registry; give each driver a clean one."""
    monkeypatch.setenv("GROUP", "mock.digi.dev")
    monkeypatch.setenv("VERSION", "v1")
    saved = default_registry.handlers()
    default_registry.clear()
    try:
        yield default_registry
    finally:
        default_registry.clear()
        for h in saved:
            default_registry.add(h.fn, h.path, priority=h.priority, condition=h.condition, child_typ=h.child_typ)


def load_driver(path: Path) -> dict[str, Any]:
    return runpy.run_path(str(path), run_name="driver")


def test_room_driver_in_the_original_style(fresh_registry: Registry, tmp_path: Path) -> None:
    driver = tmp_path / "handler.py"
    driver.write_text(textwrap.dedent(ROOM_DRIVER))
    load_driver(driver)
    assert [h.name for h in fresh_registry.handlers()] == ["do_lamps", "do_lamps", "do_status", "disabled"]

    replica = {"mode": "hide", "status": "active", "generation": 1, "spec": {"control": {}}}
    h = Harness(fresh_registry, {
        "control": {"brightness": {"intent": 0.6}},
        "meta": {"managed": False},
        "mount": {LAMPS: {"default/l1": replica, "lab/l2": replica}},
    })
    h.pump()
    for name in ("default/l1", "lab/l2"):
        assert h.spec["mount"][LAMPS][name]["spec"]["control"] == {
            "brightness": {"intent": 0.6}, "power": {"intent": "on"}}
    assert h.spec["control"]["brightness"]["status"] == 0
    assert h.spec["obs"]["lamps_on"] == 0 and "touched" not in h.spec["meta"]

    # The lamps report back (what the mounter writes into the replicas).
    h.user({"mount": {LAMPS: {
        "default/l1": {"generation": 2, "spec": {"control": {"power": {"status": "on"}, "brightness": {"status": 0.6}}}},
        "lab/l2": {"generation": 2, "spec": {"control": {"power": {"status": "off"}, "brightness": {"status": 0.2}}}},
    }}})
    assert h.spec["control"]["brightness"]["status"] == pytest.approx(0.4)
    assert h.spec["obs"]["lamps_on"] == 1

    h.user({"control": {"brightness": {"intent": 0}}})
    assert {h.spec["mount"][LAMPS][n]["spec"]["control"]["power"]["intent"] for n in ("default/l1", "lab/l2")} \
        == {"off"}
    assert "reason" not in h.spec["obs"]


def test_the_lamp_driver_we_ship(fresh_registry: Registry) -> None:
    module = load_driver(REPO / "digis" / "lamp" / "driver" / "handler.py")
    h = Harness(fresh_registry, {
        "control": {"power": {"intent": "off"}, "brightness": {"intent": 0.2}},
        "meta": {"managed": False, "gen_interval": -1, "wattage": 12},
    })
    h.pump()
    assert h.spec["control"] == {"power": {"intent": "off", "status": "off"},
                                 "brightness": {"intent": 0.2, "status": 0.2}}
    h.user({"control": {"power": {"intent": "on"}, "brightness": {"intent": 0.5}}})
    assert h.spec["control"]["power"]["status"] == "on" and h.spec["control"]["brightness"]["status"] == 0.5
    assert module["watt"](h.spec) == 6.0

    loop = dbox._loops["report_energy"]
    try:
        h.user({"meta": {"gen_interval": 30}})
        assert loop.is_alive() and loop.loop_interval == 30
        h.user({"meta": {"managed": True}})  # a scene took over: the lamp stops generating
        assert not loop.is_alive()
    finally:
        loop.stop()


def test_the_driver_digi_init_scaffolds(fresh_registry: Registry, tmp_path: Path) -> None:
    scaffold(tmp_path / "plug", "plug", group="home.digi.dev")
    load_driver(tmp_path / "plug" / "driver" / "handler.py")
    cr = render_cr((tmp_path / "plug" / "deploy" / "cr.yaml").read_text(), "p1")
    h = Harness(fresh_registry, cr["spec"])
    h.pump()
    assert h.spec["control"]["power"] == {"intent": "off", "status": "off"}
    h.user({"control": {"power": {"intent": "on"}}})
    assert h.spec["control"]["power"]["status"] == "on"
