"""Mock environment sensor: temperature, humidity, light and CO2 in `obs`.

Unmanaged, it reports a plausible office reading every `meta.gen_interval`
seconds (a random walk seeded by `meta.seed`). Managed by a scene (the `replay`
digi sets `meta.managed`), it stays quiet and the scene writes its `obs` through
its mount. Every reading is loaded into the sensor's pool, stamped with the
reading's own time (`obs.event_ts`) when it has one, so `digi query` can average
CO2 over the replayed data.
"""

import random

import digi.on as on
import digi.util as util

import digi
from digi import dbox

READINGS = ("temperature", "humidity", "light", "co2", "humidity_ratio")
# (start, step, low, high) of each random walk
WALK = {
    "temperature": (21.0, 0.1, 19.0, 24.0),
    "humidity": (27.0, 0.2, 16.0, 40.0),
    "light": (0.0, 40.0, 0.0, 1500.0),
    "co2": (600.0, 15.0, 400.0, 2000.0),
}


@dbox.loop
def measure():
    obs = digi.rc.view().get("obs", {})
    reading = {}
    for name, (start, step, low, high) in WALK.items():
        value = util.get(obs, name, start) + random.uniform(-step, step)
        reading[name] = round(min(high, max(low, value)), 3)
    digi.model.patch({"obs": reading})


@on.obs
def log(sv):
    record = {k: v for k, v in sv.items() if k in (*READINGS, "event_ts", "row")}
    if any(k in record for k in READINGS):
        digi.pool.load([record])


if __name__ == "__main__":
    digi.run()
