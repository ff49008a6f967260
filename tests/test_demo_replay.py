"""The replay scene with real sensors: lockstep and paced runs, progress, errors.

A manager (local workers) runs against the session's space; `digis/sensor`,
`digis/occupancy` and `digis/replay` run with their real drivers. The replay mounts
the two sensors (by writing its `mount`, as the mount verb does) and feeds them rows
of datatraining.txt through the mounter. Expected values come from this file's own
reading of the CSV.
"""

from __future__ import annotations

import calendar
import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digi.cli.main import cli
from digi.lake import LakeClient
from manager.kube import Client
from manager.types import GVR
from tests.manager_fixtures import REPO, ManagerProcess, wait_for

pytestmark = pytest.mark.slow

SOURCE = REPO / "data" / "occupancy" / "datatraining.txt"
REPLAY = GVR("mock.digi.dev", "v1", "replays")
SENSOR = GVR("mock.digi.dev", "v1", "sensors")
MOTION = GVR("mock.digi.dev", "v1", "occupancies")


def csv_rows(first: int, count: int) -> list[dict[str, Any]]:
    with SOURCE.open(newline="") as f:
        rows = list(csv.reader(f))[first:first + count]  # [0] is the header
    return [{"row": int(r[0]), "t": calendar.timegm(time.strptime(r[1], "%Y-%m-%d %H:%M:%S")),
             "temperature": float(r[2]), "humidity": float(r[3]), "light": float(r[4]),
             "co2": float(r[5]), "occupied": r[7] == "1"} for r in rows]


@pytest.fixture(scope="module")
def client(space: Any) -> Client:
    return Client.from_kubeconfig(space.kubeconfig)


@pytest.fixture(scope="module")
def manager(space: Any, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("replay-manager")).start()
    try:
        yield mgr
    finally:
        if mgr.proc is not None and mgr.proc.poll() is None:
            mgr.stop()


def digi(manager: ManagerProcess, *args: str) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(manager.root), "--kubeconfig", str(manager.space.kubeconfig), *args],
        catch_exceptions=False)
    assert result.exit_code == 0, f"digi {' '.join(args)} failed:\n{result.output}"


def scene(manager: ManagerProcess, client: Client, namespace: str, mount: bool = True) -> None:
    """Sensors e1 and m1 and replay r1 in `namespace`, the sensors mounted under r1."""
    digi(manager, "run", str(REPO / "digis" / "sensor"), "e1", "-n", namespace)
    digi(manager, "run", str(REPO / "digis" / "occupancy"), "m1", "-n", namespace)
    digi(manager, "run", str(REPO / "digis" / "replay"), "r1", "-n", namespace)
    if not mount:
        return
    entry = {"mode": "hide", "status": "active"}
    client.patch(REPLAY, namespace, "r1", {"spec": {"mount": {
        str(SENSOR): {f"{namespace}/e1": entry}, str(MOTION): {f"{namespace}/m1": entry}}}})
    wait_for(lambda: all(client.get(g, namespace, n)["spec"].get("meta", {}).get("managed")
                         for g, n in ((SENSOR, "e1"), (MOTION, "m1"))),
             60, "the replay to manage both sensors")


def play(client: Client, namespace: str, **meta: Any) -> dict[str, Any]:
    client.patch(REPLAY, namespace, "r1", {"spec": {"meta": {"pause": False, **meta}}})

    def finished() -> dict[str, Any] | None:
        o: dict[str, Any] = client.get(REPLAY, namespace, "r1")["spec"].get("obs", {})
        return o if o.get("state") in ("done", "error") else None

    return wait_for(finished, 300, "the replay to finish")


def spec(client: Client, gvr: GVR, namespace: str, name: str) -> dict[str, Any]:
    s: dict[str, Any] = client.get(gvr, namespace, name)["spec"]
    return s


def test_lockstep_feeds_every_row_in_order(space: Any, manager: ManagerProcess, client: Client, namespace: str) -> None:
    scene(manager, client, namespace)
    rows = csv_rows(824, 52)
    obs = play(client, namespace, source=str(SOURCE), first_row=824, row_count=52, mode="lockstep")
    assert obs["state"] == "done", obs
    assert (obs["rows_applied"], obs["rows_total"], obs["progress"]) == (52, 52, 1)
    assert (obs["row"], obs["first_ts"], obs["event_ts"]) == (rows[-1]["row"], rows[0]["t"], rows[-1]["t"])

    last = rows[-1]
    env = spec(client, SENSOR, namespace, "e1")["obs"]
    assert {k: env[k] for k in ("temperature", "humidity", "light", "co2", "event_ts", "row")} == \
        {k: last[k] for k in ("temperature", "humidity", "light", "co2")} | {"event_ts": last["t"], "row": last["row"]}
    motion = spec(client, MOTION, namespace, "m1")["obs"]
    assert (motion["motion_detected"], motion["event_ts"]) == (last["occupied"], last["t"])

    # what the motion sensor's driver logged: readings of the slice, in row order, each the CSV's value
    by_time = {r["t"]: r for r in rows}
    with LakeClient(space.lake_url) as lake:
        logged = lake.query(f'from "{namespace}_m1" | has(row) | sort ts')
    assert logged, "the motion sensor logged nothing"
    assert [r["event_ts"] for r in logged] == sorted(r["event_ts"] for r in logged)
    assert all(r["motion_detected"] == by_time[r["event_ts"]]["occupied"] for r in logged)


def test_paced_mode_plays_every_row(manager: ManagerProcess, client: Client, namespace: str) -> None:
    scene(manager, client, namespace)
    rows = csv_rows(1, 6)
    speed = (rows[-1]["t"] - rows[0]["t"]) / 2.0  # about 2 s of wall-clock time
    obs = play(client, namespace, source=str(SOURCE), first_row=1, row_count=6, mode="paced", speed=speed)
    assert obs["state"] == "done", obs
    assert (obs["rows_applied"], obs["row"]) == (6, rows[-1]["row"])
    # paced does not wait for propagation, so the sensor gets the last row a little later
    wait_for(lambda: spec(client, SENSOR, namespace, "e1")["obs"].get("row") == rows[-1]["row"],
             30, "the last row to reach the sensor")


def test_errors_are_reported_in_obs(manager: ManagerProcess, client: Client, namespace: str, tmp_path: Path) -> None:
    scene(manager, client, namespace, mount=False)
    obs = play(client, namespace, source=str(SOURCE), first_row=1, row_count=3)
    assert obs["state"] == "error"
    assert "mount a sensor" in obs["reason"]
    missing = tmp_path / "nope.txt"
    client.patch(REPLAY, namespace, "r1", {"spec": {"meta": {"source": str(missing)}}})

    def reported() -> dict[str, Any] | None:
        o = spec(client, REPLAY, namespace, "r1").get("obs", {})
        return o if str(missing) in o.get("reason", "") else None

    obs = wait_for(reported, 60, "the missing source to be reported")
    assert obs["state"] == "error"
