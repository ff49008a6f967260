"""Mock lamp: the device does what it is told, and reports the power it draws.

Status follows intent for `power` and `brightness`. Every `meta.gen_interval`
seconds (unless a scene manages the lamp) it loads a `watt` record into its
pool, which the `energy` egress publishes to parents.
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


@dbox.loop
def report_energy():
    digi.pool.load([{"watt": watt(digi.rc.view())}])


if __name__ == "__main__":
    digi.run()
