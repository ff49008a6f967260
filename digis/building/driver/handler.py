"""Building: passes its mode to the rooms and divides its brightness among them.

- `control.mode.intent` becomes every (actively mounted) room's `control.mode.intent`;
- `control.brightness.intent` is divided evenly among those rooms, which divide
  theirs among their lamps (building → room → lamp);
- `control.brightness.status` is the sum of the rooms' brightness status,
  `control.mode.status` the mode once every room reports it (else `undef`);
- `obs.occupied_rooms` counts the rooms whose `obs.occupancy` is true.
The `occupancy` ingress (`kind:room@occupancy`) collects the rooms' occupancy records.
"""

import digi
import digi.on as on
from digi.util import deep_get, deep_set

ROOMS = "mock.digi.dev/v1/rooms"


@on.mount
@on.control
def do_rooms(parent, mounts):
    building = parent
    rooms = mounts.get(ROOMS, {})
    if not rooms:
        for attr in ("brightness", "mode"):
            intent = deep_get(building, f"control.{attr}.intent")
            if intent is not None:
                deep_set(building, f"control.{attr}.status", intent)
        return

    writable = {n: r for n, r in rooms.items() if r.get("status", "active") == "active"}
    mode = deep_get(building, "control.mode.intent")
    brightness = deep_get(building, "control.brightness.intent")
    for room in writable.values():
        if mode is not None:
            deep_set(room, "spec.control.mode.intent", mode)
        if brightness is not None:
            deep_set(room, "spec.control.brightness.intent", brightness / len(writable))

    statuses = [deep_get(r, "spec.control.brightness.status") for r in rooms.values()]
    deep_set(building, "control.brightness.status", sum(s for s in statuses if isinstance(s, (int, float))))
    if mode is not None:
        modes = {deep_get(r, "spec.control.mode.status") for r in writable.values()}
        deep_set(building, "control.mode.status", mode if modes == {mode} else "undef")
    occupied = [r for r in rooms.values() if deep_get(r, "spec.obs.occupancy") is True]
    deep_set(building, "obs.occupied_rooms", len(occupied))


if __name__ == "__main__":
    digi.run()
