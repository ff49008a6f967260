"""Room: drives the lamps it mounts and reflects what they really do.

- `control.mode` (`work | idle | sleep | adaptive`) picks what the lamps get:
  `work` → on at full brightness, `idle` → 0.2 each, `sleep` → off, and
  `adaptive` → the occupancy rule of digis/room/README.md (on with a brightness
  from the measured light while occupied, off otherwise).
- Without a mode (or for what the mode leaves open) the room's own intents
  apply: `control.power.intent` to every lamp, and `control.brightness.intent`
  divided evenly among the lamps (the room's brightness is their total).
- Only active mounts are written: a yielded lamp belongs to another parent.
- Status is what the lamps report back through their replicas:
  `control.brightness.status` is the sum of their brightness, `control.power.status`
  is on while any lamp is on, `control.mode.status` is the mode once every lamp
  matches it (else `undef`). Without lamps, status follows intent.
"""

import digi
import digi.on as on
from digi.util import deep_get, deep_set

LAMPS = "mock.digi.dev/v1/lamps"
OCCUPANCIES = "mock.digi.dev/v1/occupancies"
SENSORS = "mock.digi.dev/v1/sensors"

MODES = {
    "work": {"power": "on", "brightness": 1.0},
    "idle": {"brightness": 0.2},
    "sleep": {"power": "off"},
}


def active(replicas):
    return {n: r for n, r in replicas.items() if r.get("status", "active") == "active"}


def adaptive_targets(room, mounts):
    """The README rule: occupied → on, brightness from light; else off. Returns lamp targets."""
    occupancies = mounts.get(OCCUPANCIES, {}).values()
    sensors = mounts.get(SENSORS, {}).values()
    occupied = any(deep_get(o, "spec.obs.motion_detected") is True for o in occupancies)
    lights = [deep_get(s, "spec.obs.light") for s in sensors]
    lights = [x for x in lights if isinstance(x, (int, float))]
    light = sum(lights) / len(lights) if lights else 0.0
    stamps = [deep_get(r, "spec.obs.event_ts") for r in [*occupancies, *sensors]]
    timed = [t for t in stamps if isinstance(t, (int, float))]
    if timed and (len(timed) < len(stamps) or len(set(timed)) > 1):
        return None, None  # a replayed row is still arriving, one sensor at a time
    event_ts = timed[0] if timed else None

    was = deep_get(room, "obs.occupancy")
    first = deep_get(room, "obs.event_ts") is None and event_ts is not None
    deep_set(room, "obs.occupancy", occupied)
    deep_set(room, "obs.light", light)
    if event_ts is not None:
        if was != occupied or first:
            # loaded before the lamps are written: the record is in the lake once the row settles
            digi.pool.load([{"occupancy": occupied, "event_ts": event_ts}])
        deep_set(room, "obs.event_ts", event_ts)
    if occupied:
        target = {"power": "on", "brightness": min(1.0, max(0.1, 1.0 - light / 500.0))}
    else:
        target = {"power": "off", "brightness": 0}
    return target, event_ts


@on.mount
@on.control
def do_lamps(parent, mounts):
    room = parent
    lamps = mounts.get(LAMPS, {})
    mode = deep_get(room, "control.mode.intent")

    if not lamps:
        for attr in ("brightness", "power", "mode"):
            intent = deep_get(room, f"control.{attr}.intent")
            if intent is not None:
                deep_set(room, f"control.{attr}.status", intent)
        return

    event_ts = None
    if mode == "adaptive":
        target, event_ts = adaptive_targets(room, mounts)
        if target is None:
            return
    else:
        target = dict(MODES.get(mode, {}))
    writable = active(lamps)
    power = deep_get(room, "control.power.intent")
    brightness = deep_get(room, "control.brightness.intent")
    if "power" not in target and power is not None:
        target["power"] = power
    if "brightness" not in target and brightness is not None and writable:
        target["brightness"] = brightness / len(writable)

    for lamp in writable.values():
        if "power" in target:
            deep_set(lamp, "spec.control.power.intent", target["power"])
        if "brightness" in target:
            deep_set(lamp, "spec.control.brightness.intent", target["brightness"])
        if event_ts is not None:
            deep_set(lamp, "spec.meta.event_ts", event_ts)

    reflect(room, lamps, mode, target)


def reflect(room, lamps, mode, target):
    statuses = [deep_get(lamp, "spec.control.brightness.status") for lamp in lamps.values()]
    deep_set(room, "control.brightness.status", sum(s for s in statuses if isinstance(s, (int, float))))
    powers = [deep_get(lamp, "spec.control.power.status") for lamp in lamps.values()]
    deep_set(room, "control.power.status", "on" if "on" in powers else "off")
    if mode is not None:
        matched = all(
            deep_get(lamp, f"spec.control.{attr}.status") == value
            for lamp in active(lamps).values()
            for attr, value in target.items()
        )
        deep_set(room, "control.mode.status", mode if matched else "undef")


if __name__ == "__main__":
    digi.run()
