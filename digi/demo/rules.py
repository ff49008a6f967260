"""The smart office's rules, and the figures they give when applied to the CSV.

These are the rules documented in digis/README.md. The room's driver applies the
adaptive rule live; here the same rules are applied straight to the readings, which
gives the "from the CSV" column of the demo's summary. Nothing here talks to the
dSpace.

Adaptive rule (room `control.mode` = `adaptive`): the room is occupied exactly when a
mounted motion sensor reports `motion_detected`; each lamp is `on` exactly when the
room is occupied, with brightness `clamp(1 - light/500, 0.1, 1)` (light in lux from
the environment sensor), and `off` with brightness 0 otherwise.

Energy rule: a lamp draws `wattage * brightness` W while on and 0 W while off. Over a
replay of readings t_1 … t_n, the state decided at reading i holds during
[t_i, t_{i+1}); energy = Σ_{i<n} watt_i · (t_{i+1} - t_i) / 3600 Wh. The last
reading closes the window, so the state it sets carries no energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from digi.demo.dataset import Reading

FULL_LIGHT_LUX = 500.0
MIN_BRIGHTNESS = 0.1


def brightness_for(light: float) -> float:
    return min(1.0, max(MIN_BRIGHTNESS, 1.0 - light / FULL_LIGHT_LUX))


def lamp_state(occupied: bool, light: float) -> tuple[str, float]:
    """(power, brightness) the adaptive rule gives for one reading."""
    if occupied:
        return "on", brightness_for(light)
    return "off", 0.0


def watt(power: str, brightness: float, wattage: float) -> float:
    return wattage * brightness if power == "on" else 0.0


@dataclass(frozen=True)
class Expected:
    rows: int
    occupancy_changes: int  # transitions between consecutive readings of the slice
    lamp_power_changes: int  # per lamp: off→on / on→off, starting from off
    lamp_energy_wh: float  # per lamp
    window: tuple[float, float]  # (t_1, t_n)


def expected(readings: Sequence[Reading], wattage: float) -> Expected:
    """The figures of the summary's "from the CSV" column, for lamps of `wattage` W."""
    occupancy_changes = sum(1 for a, b in pairwise(readings) if a.occupied != b.occupied)
    power_changes, power = 0, "off"
    energy_ws = 0.0
    for i, reading in enumerate(readings):
        new_power, brightness = lamp_state(reading.occupied, reading.light)
        power_changes += new_power != power
        power = new_power
        if i + 1 < len(readings):
            energy_ws += watt(new_power, brightness, wattage) * (readings[i + 1].event_ts - reading.event_ts)
    return Expected(
        rows=len(readings),
        occupancy_changes=occupancy_changes,
        lamp_power_changes=power_changes,
        lamp_energy_wh=energy_ws / 3600.0,
        window=(readings[0].event_ts, readings[-1].event_ts),
    )
