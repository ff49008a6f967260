"""The smart-office scenario on a slice of the real data, in lockstep, end to end.

It runs `digi demo office` exactly as `make demo` does (its own dSpace in a temp
root: control plane, lake, manager, workers), on rows 824..875 of datatraining.txt:
52 readings with five occupancy changes, two of them one-row blips that a replay
which did not wait for each row to propagate would lose.

Every expectation is computed below from the CSV, by this file's own reading of it
(nothing from `digi.demo`), and compared with what the product produced: the
records in the lamps', room's and building's pools (read raw from the lake), the
figures the demo printed from `digi query` and the replay's progress.
"""

from __future__ import annotations

import calendar
import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from digi.lake import LakeClient
from digi.space import Space

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "occupancy" / "datatraining.txt"
FIRST, COUNT = 824, 52
WATTAGE = 12.0  # digis/lamp/deploy/cr.yaml's meta.wattage, which the demo keeps
LAMPS = ("office-1-lamp-1", "office-1-lamp-2")


def csv_slice() -> list[dict[str, Any]]:
    with SOURCE.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    out = []
    for row_id, date, _t, _h, light, _co2, _ratio, occupancy in rows[FIRST - 1:FIRST - 1 + COUNT]:
        out.append({
            "row": int(row_id),
            "t": float(calendar.timegm(time.strptime(date, "%Y-%m-%d %H:%M:%S"))),
            "light": float(light),
            "occupied": occupancy == "1",
        })
    return out


def lamp_watts(rows: list[dict[str, Any]]) -> list[float]:
    """The adaptive rule of digis/README.md: W per row."""
    return [WATTAGE * min(1.0, max(0.1, 1.0 - r["light"] / 500.0)) if r["occupied"] else 0.0 for r in rows]


def changes(times: Sequence[float], values: Sequence[Any], start: Any) -> list[tuple[float, Any]]:
    out, last = [], start
    for t, v in zip(times, values, strict=True):
        if v != last:
            out.append((t, v))
            last = v
    return out


def energy_wh(times: list[float], watts: list[float]) -> float:
    """Σ W_i (t_{i+1} - t_i): each row's power until the next row; the last row closes the window."""
    return sum(watts[i] * (times[i + 1] - times[i]) for i in range(len(times) - 1)) / 3600.0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.CompletedProcess[str], Path]]:
    root = tmp_path_factory.mktemp("demo")
    digi = [sys.executable, "-c", "from digi.cli.main import main; main()", "--root", str(root)]
    try:
        done = subprocess.run(
            [*digi, "demo", "office", "--first-row", str(FIRST), "--rows", str(COUNT),
             "--mode", "lockstep", "-o", "json"],
            capture_output=True, text=True, timeout=900, check=False, cwd=ROOT,
        )
        yield done, root
    finally:
        subprocess.run([*digi, "space", "down"], capture_output=True, timeout=120, check=False)


def pool_records(lake: LakeClient, pool: str, field: str) -> list[dict[str, Any]]:
    """Records with `field` and a data time (records stamped only with their load time are left out)."""
    records = lake.query(f'from "{pool}" | has({field}) | sort ts')
    timed = [r for r in records if isinstance(r["event_ts"], int | float)]
    return sorted(timed, key=lambda r: r["event_ts"])  # stable: equal data times stay in load order


@pytest.mark.timeout(1200)
def test_lockstep_slice_matches_the_csv(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, root = demo_run
    assert done.stdout.strip(), f"the demo printed no summary; it said:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout)
    lines = {line["label"]: line for line in report["lines"]}

    rows = csv_slice()
    times = [r["t"] for r in rows]
    start, end = times[0], times[-1]
    watts = lamp_watts(rows)
    occupied = [r["occupied"] for r in rows]
    want_lamp = changes(times, watts, 0.0)
    # the room records its state at the first row, then every change (digis/room/README.md)
    want_room = [(times[0], occupied[0]), *changes(times[1:], occupied[1:], occupied[0])]
    assert len(want_room) >= 6  # the slice really exercises the rule

    with LakeClient(Space(root).lake_url) as lake:
        loaded = {}
        for lamp in LAMPS:
            loaded[lamp] = [(r["event_ts"], r["watt"]) for r in pool_records(lake, lamp, "watt")
                            if start <= r["event_ts"] <= end]
            # a record repeating the power already drawn (e.g. the lamp's first report) is no change
            got = changes([t for t, _ in loaded[lamp]], [w for _, w in loaded[lamp]], 0.0)
            assert [t for t, _ in got] == [t for t, _ in want_lamp], lamp
            assert [w for _, w in got] == pytest.approx([w for _, w in want_lamp], abs=1e-9), lamp
        # the room's device_energy ingress holds exactly what each lamp loaded, one source per lamp
        ingested: dict[str, list[tuple[float, float]]] = {}
        for r in pool_records(lake, "office-1", "watt"):
            if start <= r["event_ts"] <= end:
                ingested.setdefault(r["source"], []).append((r["event_ts"], r["watt"]))
        assert sorted(ingested.values()) == sorted(loaded.values())
        # a room handler re-run after a lost write may load a record twice; the series is the distinct records
        room = sorted({(r["event_ts"], r["occupancy"]) for r in pool_records(lake, "office-1", "occupancy")})
        assert [x for x in room if start <= x[0] <= end] == want_room
        building = sorted({(r["event_ts"], r["occupancy"]) for r in pool_records(lake, "hq", "occupancy")})
        assert building == room

        # agreement, recomputed here from the raw pool records
        def at(records: list[tuple[float, Any]], t: float, default: Any) -> Any:
            before = [v for ts, v in records if ts <= t]
            return before[-1] if before else default

        lamp_records = {lamp: [(r["event_ts"], r["watt"]) for r in pool_records(lake, lamp, "watt")]
                        for lamp in LAMPS}
        for r in rows:
            assert at(room, r["t"], False) == r["occupied"], r
            for lamp in LAMPS:
                assert (at(lamp_records[lamp], r["t"], 0.0) > 0) == r["occupied"], (lamp, r)

    want_wh = energy_wh(times, watts)
    assert lines["rows replayed"]["product"] == COUNT
    assert lines["occupancy changes (room vs data)"]["product"] == len(want_room) - 1
    assert lines["agreement with ground truth (%)"]["product"] == 100.0
    for lamp in LAMPS:
        assert lines[f"power changes in {lamp}'s pool"]["product"] == \
            len(changes(times, [w > 0 for w in watts], False))
        assert lines[f"energy {lamp} (Wh)"]["product"] == pytest.approx(want_wh, abs=1e-6)
    assert lines["energy office-1 (Wh, device_energy)"]["product"] == pytest.approx(2 * want_wh, abs=1e-6)
    assert lines["building occupancy series length"]["product"].endswith(f"({len(want_room)} distinct)")
    assert done.returncode == 0, report["failures"]
