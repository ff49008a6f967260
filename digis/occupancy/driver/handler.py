"""Mock motion sensor: reports `obs.motion_detected`.

Unmanaged, it invents a detection every `meta.gen_interval` seconds (seeded by
`meta.seed`, so a run is reproducible). Managed by a scene (the `replay` digi sets
`meta.managed`), it stays quiet and the scene writes its `obs` through its mount.
Either way every observation is loaded into the sensor's pool, stamped with the
reading's own time (`obs.event_ts`) when it has one.
"""

import random

import digi.on as on

import digi
from digi import dbox


@dbox.loop
def detect():
    digi.model.patch({"obs": {"motion_detected": random.random() < 0.5}})


@on.obs
def log(sv):
    if "motion_detected" in sv:
        digi.pool.load([{k: v for k, v in sv.items() if k in ("motion_detected", "event_ts", "row")}])


if __name__ == "__main__":
    digi.run()
