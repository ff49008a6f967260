"""The piper inside a real manager: real API server (session `space`), a private lake.

The lake is this test's own `zed serve` (lake_fixtures) because the
exactly-once test restarts it; the manager gets it through `--lake-url`.
Lamps and rooms here are free-form test kinds without drivers: the test loads
the lamps' records with `digi.pool.load`, exactly as a lamp's driver does from
its worker (same environment variables).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import lake_fixtures
import pytest
from click.testing import CliRunner
from lake_fixtures import ZedServer, in_commit_order
from manager_fixtures import ManagerProcess, wait_for

import digi.pool
from digi.cli.main import cli
from digi.lake import LakeClient, LakeError, pool_name
from digi.space import Space
from manager.cache import CRD_GVR, crd_gvr
from manager.events import EVENT_GVR
from manager.kube import Client
from manager.types import GVR

zed_server = lake_fixtures.zed_server
LAMPS = GVR("piper.test.digi.dev", "v1", "lamps")
ROOMS = GVR("piper.test.digi.dev", "v1", "rooms")
PIPELETS = GVR("digi.dev", "v1", "pipelets")
EGRESS = {"energy": {"flow": "watt | cut watt,event_ts"}}


def free_crd(kind: str, plural: str) -> dict[str, Any]:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.piper.test.digi.dev", "labels": {"digi.dev/kind": "true"}},
        "spec": {
            "group": "piper.test.digi.dev", "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": free}}}}],
        },
    }


@pytest.fixture(scope="module")
def client(space: Space) -> Client:
    c = Client.from_kubeconfig(str(space.kubeconfig))
    for kind, plural in (("Lamp", "lamps"), ("Room", "rooms")):
        crd = free_crd(kind, plural)
        if c.get_or_none(CRD_GVR, None, crd["metadata"]["name"]) is None:
            c.create(CRD_GVR, None, crd)

        def established(name: str = crd["metadata"]["name"]) -> Any:
            return crd_gvr(c.get(CRD_GVR, None, name))

        wait_for(established, 30, f"CRD {plural}")
    return c


@pytest.fixture
def manager(space: Space, zed_server: ZedServer, tmp_path: Path) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path / "manager", "--lake-url", zed_server.url)
    mgr.start()
    try:
        yield mgr
    finally:
        mgr.stop()


@pytest.fixture
def lake(zed_server: ZedServer) -> Iterator[LakeClient]:
    with LakeClient(zed_server.url) as c:
        yield c


def lamp(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "piper.test.digi.dev/v1", "kind": "Lamp", "metadata": {"name": name, "namespace": ns},
            "spec": {"egress": EGRESS}}


def mount_entry(*names: str, ns: str) -> dict[str, Any]:
    return {str(LAMPS): {f"{ns}/{n}": {"mode": "hide", "status": "active"} for n in names}}


def load(monkeypatch: pytest.MonkeyPatch, url: str, name: str, ns: str, watts: list[float]) -> float:
    """Load records as lamp `name`'s driver would (digi.pool in its worker environment)."""
    monkeypatch.setenv("DIGI_LAKE_URL", url)
    monkeypatch.setenv("NAME", name)
    monkeypatch.setenv("NAMESPACE", ns)
    digi.pool.load([{"watt": w} for w in watts])
    return sum(watts)


def digi_query(space: Space, url: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--root", str(space.root), "query", *args, "-o", "json", "--lake-url", url])
    if result.exit_code != 0:
        return None  # the room's pool may not hold anything yet
    return json.loads(result.output)


def events(client: Client, ns: str, name: str, reason: str) -> list[str]:
    items = client.list(EVENT_GVR, ns)["items"]
    return [e["message"] for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


def test_room_sums_its_lamps_follows_mounts_and_recovers_from_a_bad_flow(
        space: Space, client: Client, manager: ManagerProcess, zed_server: ZedServer, lake: LakeClient,
        namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ns, url = namespace, zed_server.url
    for n in ("l1", "l2", "l3"):
        client.create(LAMPS, ns, lamp(n, ns))
    client.create(ROOMS, ns, {
        "apiVersion": "piper.test.digi.dev/v1", "kind": "Room", "metadata": {"name": "room", "namespace": ns},
        "spec": {"mount": mount_entry("l1", "l2", ns=ns),
                 "ingress": {"device_energy": {"sources": ["kind:any@energy"], "flow_agg": "watt:=sum(watt)"}}},
    })
    pools = {pool_name(n, ns) for n in ("l1", "l2", "l3", "room")}
    wait_for(lambda: pools <= {p.name for p in lake.pools()}, 60, "a pool per digi")

    expected = load(monkeypatch, url, "l1", ns, [12.0, 6.5, 0.0])
    expected += load(monkeypatch, url, "l2", ns, [7.25, 3.0])
    load(monkeypatch, url, "l3", ns, [100.0])  # not mounted yet
    wait_for(lambda: digi_query(space, url, "room", "sum(watt)", "-n", ns) == [expected], 60, "the room's sum")

    # Mounting a third lamp adds it to kind:any; unmounting the first removes it.
    client.patch(ROOMS, ns, "room", {"spec": {"mount": mount_entry("l3", ns=ns)}})
    expected += 100.0
    wait_for(lambda: digi_query(space, url, "room", "sum(watt)", "-n", ns) == [expected], 60, "l3 added")
    client.patch(ROOMS, ns, "room", {"spec": {"mount": {str(LAMPS): {f"{ns}/l1": None}}}})
    room_id = f"ingress:{ns}/room/device_energy"

    def pipeline(pid: str) -> dict[str, Any] | None:
        return next((p for p in httpx.get(f"{manager.url}/api/v1/pipelines").json() if p["id"] == pid), None)

    wait_for(lambda: (p := pipeline(room_id)) and p["sources"] == [f"{ns}_l2@energy", f"{ns}_l3@energy"],
             30, "l1 to leave the room's sources")
    load(monkeypatch, url, "l1", ns, [1000.0])
    expected += load(monkeypatch, url, "l2", ns, [0.5])
    wait_for(lambda: digi_query(space, url, "room", "sum(watt)", "-n", ns) == [expected], 60, "l2's new record")

    # A flow with a syntax error: the pipeline stops with the lake's error, visible on the room and in
    # `digi lake status`; fixing the flow resumes from the watermark.
    client.patch(ROOMS, ns, "room", {"spec": {"ingress": {"device_energy": {"flow_agg": "watt:=sum(watt"}}}})
    wait_for(lambda: any("error parsing Zed" in m for m in events(client, ns, "room", "PipelineError")),
             60, "a PipelineError event on the room")
    expected += load(monkeypatch, url, "l2", ns, [4.0])
    status = CliRunner().invoke(cli, ["--root", str(space.root), "lake", "status", "-o", "json",
                                      "--lake-url", url, "--manager-url", manager.url])
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    room = next(p for p in report["pipelines"] if p["id"] == room_id)
    assert room["state"] == "error" and "error parsing Zed" in room["message"]
    assert {"pool": pool_name("room", ns), "branch": "main"}.items() <= next(
        b for b in report["branches"] if b["pool"] == pool_name("room", ns)).items()
    client.patch(ROOMS, ns, "room", {"spec": {"ingress": {"device_energy": {"flow_agg": "watt:=sum(watt)"}}}})
    wait_for(lambda: digi_query(space, url, "room", "sum(watt)", "-n", ns) == [expected], 60,
             "the fixed flow to resume")
    table = CliRunner().invoke(cli, ["--root", str(space.root), "lake", "status", "--lake-url", url,
                                     "--manager-url", manager.url])
    assert room_id in table.output and "running" in table.output
    samples = manager.metrics()
    moved = {s[0]["pipelet"]: s[1] for s in samples["digi_pipelet_records_total"]}
    assert moved[f"egress:{ns}/l1/energy"] == 4
    assert any(labels["pipelet"] == room_id and value >= 1 for labels, value in samples["digi_pipelet_errors_total"])


def test_pipelet_exactly_once_in_order_across_manager_kill_and_lake_restart(
        space: Space, client: Client, manager: ManagerProcess, zed_server: ZedServer, lake: LakeClient,
        namespace: str, tmp_path: Path) -> None:
    ns, sources, per_source, chunk = namespace, ["a", "b"], 200, 10
    for s in sources:
        lake.create_pool(f"{ns}-{s}")
    client.create(PIPELETS, ns, {
        "apiVersion": "digi.dev/v1", "kind": "Pipelet", "metadata": {"name": "collect", "namespace": ns},
        "spec": {"src": [f"{ns}-{s}@main" for s in sources], "dst": [f"{ns}-sink@main"],
                 "flow": "cut ts,src,seq"},
    })
    progress = dict.fromkeys(sources, 0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def loader(src: str, offset: int) -> None:
        with LakeClient(zed_server.url, timeout=5) as c:
            while progress[src] < per_source:
                n = progress[src]
                rows = [{"ts": t0 + timedelta(seconds=n + i, milliseconds=offset), "src": src, "seq": n + i}
                        for i in range(chunk)]
                try:
                    c.load(f"{ns}-{src}", "main", rows)
                except LakeError:
                    continue  # the lake is restarting
                progress[src] = n + chunk

    def moved() -> int:
        try:
            return lake.record_count(f"{ns}-sink")
        except LakeError:
            return 0

    threads = [threading.Thread(target=loader, args=(s, i), daemon=True) for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    wait_for(lambda: moved() >= 40, 60, "records to start moving")
    manager.kill()  # SIGKILL mid-stream: no graceful shutdown
    replacement = ManagerProcess(space, tmp_path / "manager2", "--lake-url", zed_server.url)
    replacement.start()
    try:
        wait_for(lambda: moved() >= 150, 60, "records to move after the manager restart")
        zed_server.restart()
        for t in threads:
            t.join(120)
        total = per_source * len(sources)
        wait_for(lambda: moved() >= total, 120, "every record in the sink")
        # In commit order: a plain `from` is sorted by ts whatever order the loads had.
        rows = in_commit_order(lake, f"{ns}-sink")
        assert len(rows) == total, f"{len(rows) - total} records arrived twice"
        for s in sources:
            assert [r["seq"] for r in rows if r["src"] == s] == list(range(per_source))
    finally:
        replacement.stop()


def test_pools_are_kept_on_deletion_unless_configured(
        space: Space, client: Client, manager: ManagerProcess, zed_server: ZedServer, lake: LakeClient,
        namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = namespace

    def pipelines(url: str) -> set[str]:
        return {p["id"] for p in httpx.get(f"{url}/api/v1/pipelines").json()}

    client.create(LAMPS, ns, lamp("k1", ns))
    wait_for(lambda: f"egress:{ns}/k1/energy" in pipelines(manager.url), 60, "k1's egress")
    load(monkeypatch, zed_server.url, "k1", ns, [1.0])
    client.delete(LAMPS, ns, "k1")
    wait_for(lambda: f"egress:{ns}/k1/energy" not in pipelines(manager.url), 60, "k1's egress to go")
    assert lake.record_count(pool_name("k1", ns)) == 1  # the data outlives the digi by default
    manager.stop()

    monkeypatch.setenv("DIGI_DELETE_POOLS", "true")
    deleting = ManagerProcess(space, tmp_path / "deleting", "--lake-url", zed_server.url)
    deleting.start()
    try:
        client.create(LAMPS, ns, lamp("k2", ns))
        wait_for(lambda: pool_name("k2", ns) in {p.name for p in lake.pools()}, 60, "k2's pool")
        client.delete(LAMPS, ns, "k2")
        wait_for(lambda: pool_name("k2", ns) not in {p.name for p in lake.pools()}, 60, "k2's pool deleted")
    finally:
        deleting.stop()


def test_room_ingress_feeds_its_own_egress_with_staggered_backlogged_and_late_mounted_lamps(
        space: Space, client: Client, zed_server: ZedServer, lake: LakeClient, namespace: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped room's two hops in a real manager: lamps' energy → room@main (ingress) →
    room@energy (egress). Small batches, a backlog, the room driver's own loads and a lamp with
    history mounted late: room@energy gets every record once, in commit order."""
    ns, url = namespace, zed_server.url
    monkeypatch.setenv("DIGI_PIPER_BATCH", "3")
    mgr = ManagerProcess(space, tmp_path / "manager", "--lake-url", url).start()
    try:
        for n in ("l1", "l2", "l3"):
            client.create(LAMPS, ns, {**lamp(n, ns), "spec": {"egress": {"energy": {"flow": "has(watt)"}}}})
        client.create(ROOMS, ns, {
            "apiVersion": "piper.test.digi.dev/v1", "kind": "Room", "metadata": {"name": "room", "namespace": ns},
            "spec": {"mount": mount_entry("l1", "l2", ns=ns),
                     "ingress": {"device_energy": {"sources": ["kind:any@energy"], "patch_source": True}},
                     "egress": {"energy": {"flow": "has(watt)"}}},
        })
        wait_for(lambda: {pool_name(n, ns) for n in ("l1", "l2", "l3", "room")} <= {p.name for p in lake.pools()},
                 60, "a pool per digi")
        seqs: dict[str, int] = {}

        def drive(name: str, loads: int) -> None:
            monkeypatch.setenv("DIGI_LAKE_URL", url)
            monkeypatch.setenv("NAME", name)
            monkeypatch.setenv("NAMESPACE", ns)
            for _ in range(loads):
                seq = seqs.get(name, 0)
                digi.pool.load([{"watt": 1.0, "who": name, "seq": seq}])
                seqs[name] = seq + 1

        drive("l3", 5)  # history, before l3 is mounted
        for _ in range(4):  # interleaved, each a backlog of several batches
            drive("l1", 4)
            drive("room", 1)  # the room's driver writes its main too
            drive("l2", 3)
        energy = pool_name("room", ns)

        def arrived() -> int:
            try:
                return lake.record_count(energy, "energy")
            except LakeError:
                return 0

        wait_for(lambda: arrived() >= seqs["l1"] + seqs["l2"] + seqs["room"], 120, "the first records")
        client.patch(ROOMS, ns, "room", {"spec": {"mount": mount_entry("l3", ns=ns)}})
        drive("l1", 2)
        total = sum(seqs.values())
        wait_for(lambda: arrived() >= total, 120, "every record in room@energy")
        rows = in_commit_order(lake, energy, "energy")
        got = [(r["who"], r["seq"]) for r in rows]
        assert sorted(got) == sorted((n, i) for n, c in seqs.items() for i in range(c)), "lost or repeated"
        for n, c in seqs.items():
            assert [s for who, s in got if who == n] == list(range(c)), f"{n} out of order"
    finally:
        mgr.stop()
