"""What the product produced, read back after a run: pools through `digi query`, latency
from the manager's `/metrics`, progress from the replay's `obs`.

Every figure here comes from the running system; the CSV is used only for the row
times and the ground truth against which the product's series are scored.
`agreement` replays the product's change records onto the replayed rows: at row i the
room's occupancy (and each lamp's power) is its last record with `event_ts` ≤ t_i,
and before any record the room is unoccupied and a lamp off, as they start.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from digi.demo import lakeq, promq
from digi.demo.dataset import Reading
from digi.demo.scenario import Office
from digi.lake import pool_name

LATENCY_METRIC = "digi_mount_propagation_seconds"
# The field the piper's `patch_source` adds to ingested records (the source digi's pool).
SOURCE_FIELD = "source"

Query = Callable[[str], list[dict[str, Any]]]
Series = list[tuple[float, Any]]


@dataclass
class Observed:
    rows_applied: int
    window: tuple[float, float]
    lamp_series: dict[str, Series]  # lamp → [(event_ts, watt)]
    room_occupancy: Series  # [(event_ts, occupied)]
    lamp_energy_wh: dict[str, float]
    room_energy_wh: float
    room_energy_by_source: dict[str, float]
    room_watt_records: int
    building_occupancy_records: int
    building_occupancy_distinct: int  # a handler re-run after a lost write may load a record twice
    latency: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # direction → (p50, p99) s


def series(query: Query, pool: str, name: str, window: tuple[float, float] | None = None) -> Series:
    """`(event_ts, value)` of `pool`'s records that have `name`, in data-time order, within `window`.

    A digi's records from before a replay (a lamp reports its initial 0 W at start,
    stamped with the load time) fall outside the replay's data-time window.
    """
    rows = [(float(r["event_ts"]), r["value"]) for r in query(lakeq.series(pool, name))]
    return rows if window is None else [(t, v) for t, v in rows if window[0] <= t <= window[1]]


def count_with(query: Query, pool: str, name: str) -> int:
    return len(query(lakeq.series(pool, name)))


def power_changes(watts: Series) -> int:
    """off→on and on→off transitions of a lamp's records, starting from off."""
    changes, on = 0, False
    for _, watt in watts:
        now_on = float(watt) > 0
        changes += now_on != on
        on = now_on
    return changes


def state_at(records: Sequence[tuple[float, Any]], default: Any) -> Callable[[float], Any]:
    """t ↦ the value of the last record (in data-time order) with event_ts ≤ t, else `default`."""
    times = [ts for ts, _ in records]

    def at(t: float) -> Any:
        i = bisect_right(times, t)
        return records[i - 1][1] if i else default

    return at


def agreement(readings: Sequence[Reading], room: Series, lamps: Mapping[str, Series]) -> float:
    """Share of rows at which the room's occupancy and every lamp's power match the ground truth."""
    ok, room_at = 0, state_at(room, False)
    lamps_at = [state_at(s, 0.0) for s in lamps.values()]
    for r in readings:
        occupied = bool(room_at(r.event_ts))
        lamps_on = [float(at(r.event_ts)) > 0 for at in lamps_at]
        ok += occupied == r.occupied and all(on == r.occupied for on in lamps_on)
    return ok / len(readings)


def latency(metrics_url: str) -> dict[str, tuple[float, float] | None]:
    text = httpx.get(metrics_url, timeout=10).text
    out: dict[str, tuple[float, float] | None] = {}
    for direction in ("down", "up"):
        b = promq.buckets(text, LATENCY_METRIC, {"direction": direction})
        p50, p99 = promq.quantile(0.5, b), promq.quantile(0.99, b)
        out[direction] = None if p50 is None or p99 is None else (p50, p99)
    return out


def pipeline_counts(query: Query, office: Office) -> dict[str, tuple[int, int]]:
    """(have, want) per pipeline: the room's device_energy ingress and the building's occupancy ingress."""
    ns = office.namespace
    lamp_records = sum(count_with(query, pool_name(lamp, ns), "watt") for lamp in office.lamps)
    room_occupancy = count_with(query, pool_name(office.room, ns), "occupancy")
    return {
        f"{office.room} device_energy": (count_with(query, pool_name(office.room, ns), "watt"), lamp_records),
        f"{office.building} occupancy": (count_with(query, pool_name(office.building, ns), "occupancy"),
                                         room_occupancy),
    }


def observe(query: Query, office: Office, replay_obs: Mapping[str, Any], metrics_url: str | None) -> Observed:
    ns = office.namespace
    window = (float(replay_obs["first_ts"]), float(replay_obs["event_ts"]))
    room_pool = pool_name(office.room, ns)
    lamp_energy = {}
    for lamp in office.lamps:
        rows = query(lakeq.energy(pool_name(lamp, ns), window))
        lamp_energy[lamp] = float(rows[0]["wh"]) if rows else 0.0
    by_source = {str(r["key"]): float(r["wh"]) for r in query(lakeq.energy_by(room_pool, window, SOURCE_FIELD))}
    building = series(query, pool_name(office.building, ns), "occupancy")
    return Observed(
        rows_applied=int(replay_obs["rows_applied"]),
        window=window,
        lamp_series={lamp: series(query, pool_name(lamp, ns), "watt", window) for lamp in office.lamps},
        room_occupancy=series(query, room_pool, "occupancy", window),
        lamp_energy_wh=lamp_energy,
        room_energy_wh=sum(by_source.values()),
        room_energy_by_source=by_source,
        room_watt_records=count_with(query, room_pool, "watt"),
        building_occupancy_records=len(building),
        building_occupancy_distinct=len(set(building)),
        latency=latency(metrics_url) if metrics_url else {},
    )
