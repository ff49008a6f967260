"""Mock lamp: the device does what it is told, and reports the power it draws.

Status follows intent for `power` and `brightness`. Whenever the power drawn
changes it loads a `watt` record into its pool (stamped with `meta.event_ts`,
the data time a parent sent along, when there is one), and every
`meta.gen_interval` seconds (unless a scene manages the lamp) it samples the
draw again; the `energy` egress publishes the records to parents.
"""

import digi
import digi.on as on
import digi.util as util
from digi import dbox


@on.control("power")
def do_power(p):
    if "intent" in p:
        p["status"] = p["intent"]


@on.control("brightness")
def do_brightness(b):
    if "intent" in b:
        b["status"] = b["intent"]


def watt(model):
    if util.get(model, "control.power.status") != "on":
        return 0.0
    wattage = util.get(model, "meta.wattage", 0) or 0
    brightness = util.get(model, "control.brightness.status", 0) or 0
    return float(wattage) * float(brightness)


_loaded = {"watt": None}


@on.control(prio=1)
def report_change(proc_view):
    """Load {watt, event_ts} whenever the power drawn changes, stamped with the
    data time a parent sent along (meta.event_ts) when there is one."""
    w = watt(proc_view)
    if w == _loaded["watt"]:
        return
    record = {"watt": w}
    event_ts = util.get(proc_view, "meta.event_ts")
    if event_ts is not None:
        record["event_ts"] = event_ts
    digi.pool.load([record])
    _loaded["watt"] = w


@dbox.loop
def report_energy():
    digi.pool.load([{"watt": watt(digi.rc.view())}])


if __name__ == "__main__":
    digi.run()
