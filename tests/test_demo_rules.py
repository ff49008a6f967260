"""The demo's pure parts: reading the data set, the documented rules applied to the CSV,
the energy queries run on a real `zed serve`, and histogram quantiles.

Expectations are computed here from the inputs (a small CSV written by the test, or
the records the test loads), never copied from the code under test.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lake_fixtures import ZedServer, zed_server  # noqa: F401  (fixture)

from digi.demo import dataset, lakeq, promq, rules
from digi.lake import LakeClient

DATA = Path(__file__).resolve().parents[1] / "data" / "occupancy"
HEADER = '"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"\n'


def write_csv(path: Path, rows: list[tuple[str, float, int]]) -> Path:
    """rows: (date, light, occupancy); the other columns get fixed plausible values."""
    lines = [HEADER] + [
        f'"{i}","{date}",21.5,27.1,{light},700,0.0044,{occ}\n'
        for i, (date, light, occ) in enumerate(rows, start=1)
    ]
    path.write_text("".join(lines))
    return path


def test_reads_every_row_of_the_shipped_file() -> None:
    path = DATA / "datatraining.txt"
    with path.open(newline="") as f:
        raw = list(csv.reader(f))[1:]
    readings = dataset.read(path)
    assert len(readings) == len(raw)
    for reading, record in zip(readings, raw, strict=True):
        assert reading.row == int(record[0])
        assert reading.event_ts == datetime.fromisoformat(record[1] + "+00:00").timestamp()
        assert reading.light == float(record[4])
        assert reading.occupied is (record[7] == "1")


def test_slices_count_from_the_first_data_row() -> None:
    path = DATA / "datatest.txt"
    whole = dataset.read(path)
    part = dataset.read(path, first_row=10, count=5)
    assert part == whole[9:14]
    assert dataset.read(path, first_row=len(whole)) == whole[-1:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"a","b"\n', "header"),
        (HEADER + '"1","2015-02-04 17:51:00",23,27,426,721,0.0047,2\n', "Occupancy must be 0 or 1"),
        (HEADER + '"1","2015-02-04 17:51:00",23,27\n', "expected 8 values"),
        (HEADER + '"1","yesterday",23,27,426,721,0.0047,1\n', "yesterday"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(dataset.DatasetError, match=message) as err:
        dataset.read(path)
    assert str(path) in str(err.value)


def test_a_slice_past_the_end_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.txt", [("2015-02-04 17:51:00", 10, 1)])
    with pytest.raises(dataset.DatasetError, match="no data rows from row 2"):
        dataset.read(path, first_row=2)


def test_rules_on_a_small_trace(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.txt", [
        ("2015-02-04 10:00:00", 0, 1),     # on, full brightness, for 60 s
        ("2015-02-04 10:01:00", 250, 1),   # on at half brightness for 90 s
        ("2015-02-04 10:02:30", 100, 0),   # off for 30 s
        ("2015-02-04 10:03:00", 900, 1),   # on at the floor; closes the window
    ])
    got = rules.expected(dataset.read(path), wattage=12)
    assert got.rows == 4
    assert got.occupancy_changes == 2
    assert got.lamp_power_changes == 3
    assert got.lamp_energy_wh == pytest.approx((12 * 1.0 * 60 + 12 * 0.5 * 90) / 3600)
    assert rules.lamp_state(True, 900) == ("on", 0.1)
    assert rules.lamp_state(False, 0) == ("off", 0.0)


def _energy_direct(records: list[tuple[float, float]], end: float) -> float:
    """Σ watt·Δt over [first record, end] by stepping through the sorted change records."""
    total, ordered = 0.0, sorted(records)
    for (t, w), (t_next, _) in zip(ordered, [*ordered[1:], (end, 0.0)], strict=True):
        total += w * (t_next - t)
    return total / 3600


change_records = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from([0.0, 1.2, 6.0, 12.0])),
    min_size=1, max_size=30, unique_by=lambda r: r[0],
)


@pytest.fixture
def lake(zed_server: ZedServer) -> Iterator[LakeClient]:  # noqa: F811
    with LakeClient(zed_server.url) as client:
        yield client


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=change_records, b=change_records)
def test_energy_queries_match_the_rule(lake: LakeClient, a: list[tuple[int, float]], b: list[tuple[int, float]]) -> None:
    for pool in ("lamp-a", "room"):
        if any(p.name == pool for p in lake.pools()):
            lake.delete_pool(pool)
        lake.create_pool(pool)
    base = 1_423_072_260.0
    lamp = [(base + t, w) for t, w in a]
    other = [(base + t, w) for t, w in b]
    lake.load("lamp-a", "main", [{"watt": w, "event_ts": t} for t, w in lamp])
    lake.load("room", "main", [{"watt": w, "event_ts": t, "source": "lamp-a"} for t, w in lamp]
              + [{"watt": w, "event_ts": t, "source": "lamp-b"} for t, w in other]
              + [{"occupancy": True, "event_ts": base}])
    start = min(t for t, _ in lamp + other)
    end = max(t for t, _ in lamp + other) + 60
    (row,) = lake.query(lakeq.energy("lamp-a", (start, end)))
    assert row["wh"] == pytest.approx(_energy_direct(lamp, end), rel=1e-12, abs=1e-9)
    per_source = {r["key"]: r["wh"] for r in lake.query(lakeq.energy_by("room", (start, end), "source"))}
    assert per_source == pytest.approx({"lamp-a": _energy_direct(lamp, end), "lamp-b": _energy_direct(other, end)})


def test_a_later_load_at_the_same_data_time_wins(lake: LakeClient) -> None:
    lake.create_pool("l")
    lake.load("l", "main", [{"watt": 12.0, "event_ts": 0.0, "ts": datetime(2026, 1, 1, tzinfo=UTC)}])
    lake.load("l", "main", [{"watt": 6.0, "event_ts": 0.0, "ts": datetime(2026, 1, 2, tzinfo=UTC)}])
    (row,) = lake.query(lakeq.energy("l", (0.0, 3600.0)))
    assert row["wh"] == pytest.approx(6.0)
    assert [r["value"] for r in lake.query(lakeq.series("l", "watt"))] == [12.0, 6.0]


def test_records_without_a_data_time_stay_out(lake: LakeClient) -> None:
    """A lamp's initial 0 W, stamped with the load time, is neither in a series nor in the energy."""
    lake.create_pool("l")
    lake.load("l", "main", [{"watt": 0.0, "event_ts": datetime(2026, 1, 1, tzinfo=UTC)},
                            {"watt": 12, "event_ts": 100}, {"watt": 0.0, "event_ts": 160.0}])
    assert [(r["event_ts"], r["value"]) for r in lake.query(lakeq.series("l", "watt"))] == [(100, 12), (160, 0)]
    (row,) = lake.query(lakeq.energy("l", (100.0, 200.0)))
    assert row["wh"] == pytest.approx(12 * 60 / 3600)


def test_histogram_quantiles_interpolate_inside_buckets() -> None:
    text = (
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{direction="down",le="0.01"} 2.0\n'
        'lat_seconds_bucket{direction="down",le="0.1"} 6.0\n'
        'lat_seconds_bucket{direction="down",le="+Inf"} 8.0\n'
        'lat_seconds_count{direction="down"} 8.0\n'
        'lat_seconds_sum{direction="down"} 1.0\n'
        'lat_seconds_bucket{direction="up",le="0.01"} 0.0\n'
        'lat_seconds_bucket{direction="up",le="0.1"} 0.0\n'
        'lat_seconds_bucket{direction="up",le="+Inf"} 0.0\n'
    )
    down = promq.buckets(text, "lat_seconds", {"direction": "down"})
    # rank 4 of 8 lies halfway through the (0.01, 0.1] bucket, which holds ranks 3..6
    assert promq.quantile(0.5, down) == pytest.approx(0.01 + 0.09 * (4 - 2) / (6 - 2))
    assert promq.quantile(0.99, down) == 0.1  # in +Inf: the last finite bound
    assert promq.quantile(0.5, promq.buckets(text, "lat_seconds", {"direction": "up"})) is None


def test_summary_verdict(tmp_path: Path) -> None:
    from digi.demo.observe import Observed
    from digi.demo.summary import compare, render

    path = write_csv(tmp_path / "d.txt", [
        ("2015-02-04 10:00:00", 0, 0), ("2015-02-04 10:01:00", 250, 1), ("2015-02-04 10:02:00", 250, 0),
    ])
    readings = dataset.read(path)
    t = [r.event_ts for r in readings]
    # what a correct run leaves in the pools: the lamps on at half brightness during the middle row
    lamp = [(t[1], 6.0), (t[2], 0.0)]
    seen = Observed(rows_applied=3, window=(t[0], t[2]), lamp_series={"l1": lamp, "l2": lamp},
                    room_occupancy=[(t[0], False), (t[1], True), (t[2], False)],
                    lamp_energy_wh={"l1": 0.1, "l2": 0.1}, room_energy_wh=0.2, room_energy_by_source={},
                    room_watt_records=4, building_occupancy_records=3, building_occupancy_distinct=3)
    want = {name: rules.expected(readings, 12) for name in ("l1", "l2")}
    assert want["l1"].lamp_energy_wh == pytest.approx(6.0 * 60 / 3600)
    good = compare("t", "room", readings, seen, want, "lockstep", [])
    assert good.failures == [], render(good)
    assert "agreement with ground truth (%)" in render(good) and "100.0 " in render(good)

    seen.lamp_energy_wh["l2"] = 0.1 + 1e-3
    seen.room_occupancy = [(t[0], False), (t[2], False)]  # the room missed the middle row
    bad = compare("t", "room", readings, seen, want, "lockstep", ["room device_energy: 3 of 4 records"])
    assert [f.split(":")[0] for f in bad.failures] == [
        "occupancy changes (room vs data)", "agreement with ground truth (%)", "energy l2 (Wh)",
        "pipeline still lagging"]
    paced = compare("t", "room", readings, seen, want, "paced", [])
    assert paced.failures == []
    assert "OK" not in render(paced) and "--mode lockstep" in render(paced)
