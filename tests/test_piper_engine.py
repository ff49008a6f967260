"""The piper's pipeline engine and scheduler against a real `zed serve`.

No Kubernetes here: sources are resolved through a plain callable standing in
for the mounts, as the controller does with a digi's `spec.mount`. The
Kubernetes wiring is tested in test_piper_controller.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import lake_fixtures
import pytest
from lake_fixtures import ZedServer, in_commit_order

from controllers.piper.engine import ERROR, PAUSED, RUNNING, PipelineRun, Stamps
from controllers.piper.runner import Piper, records_total
from controllers.piper.spec import Pipeline, PipelineConfig, Source, fixed
from digi.lake import LakeClient, LakeError, zed

zed_server = lake_fixtures.zed_server
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def lake(zed_server: ZedServer) -> Iterator[LakeClient]:
    with LakeClient(zed_server.url) as client:
        yield client


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0,
             what: str | Callable[[], str] = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what if isinstance(what, str) else what()}")


def query(lake: LakeClient, text: str) -> list[Any] | None:
    """The query's values, or None while the pool does not exist yet."""
    try:
        return lake.query(text)
    except LakeError:
        return None


def egress(pool: str, flow: str = "watt | cut watt,event_ts") -> Pipeline:
    return Pipeline(PipelineConfig(id=f"egress:{pool}/energy", dst=Source(pool, "energy"), flow=flow),
                    fixed([Source(pool)]), ("Lamp", "default", pool))


def drain(run: PipelineRun) -> None:
    while run.step():
        pass


def test_two_lamps_feed_their_room_and_mounts_change_sources(zed_server: ZedServer, lake: LakeClient) -> None:
    mounts = ["l1", "l2"]
    piper = Piper(zed_server.url, batch_size=4, poll_interval=30)
    for lamp in ("l1", "l2", "l3"):
        lake.create_pool(lamp)
        piper.apply(egress(lamp))
    piper.apply(Pipeline(
        PipelineConfig(id="ingress:room/device_energy", dst=Source("room"), flow_agg="watt:=sum(watt)"),
        lambda: [Source(m, "energy") for m in mounts], ("Room", "default", "room")))
    piper.start()
    try:
        loaded: dict[str, float] = {}

        def load(lamp: str, watts: list[float], at: int) -> None:
            lake.load(lamp, "main", [{"ts": T0 + timedelta(seconds=at + i), "watt": w} for i, w in enumerate(watts)])
            loaded[lamp] = loaded.get(lamp, 0.0) + sum(watts)

        load("l1", [12.0, 6.5, 0.0, 3.25, 1.0], 0)
        load("l2", [7.0, 7.0, 2.5], 0)
        load("l3", [100.0], 0)  # not mounted: must not count
        expected = loaded["l1"] + loaded["l2"]
        wait_for(lambda: query(lake, 'from "room" | sum(watt)') == [expected], what="the room's sum")

        mounts.append("l3")
        piper.wake("ingress:room/device_energy")
        expected += loaded["l3"]
        wait_for(lambda: query(lake, 'from "room" | sum(watt)') == [expected], what="l3 to be added")

        mounts.remove("l1")
        piper.wake("ingress:room/device_energy")
        wait_for(lambda: (run := piper.run("ingress:room/device_energy")) is not None
                 and run.status.sources == ["l2@energy", "l3@energy"])
        load("l1", [50.0], 10)  # unmounted: no longer moved
        load("l2", [1.5], 10)
        expected += 1.5
        wait_for(lambda: query(lake, 'from "room" | sum(watt)') == [expected], what="l2's new record")
        wait_for(piper.idle, what="the piper to settle")
        assert lake.query('from "room" | sum(watt)') == [expected]
        assert records_total.labels("egress:l1/energy")._value.get() == 6
    finally:
        piper.stop()


def _seq_records(src: str, start: int, count: int, base: datetime) -> list[dict[str, Any]]:
    return [{"ts": base + timedelta(milliseconds=i), "src": src, "seq": start + i} for i in range(count)]


def test_exactly_once_in_order_across_manager_and_lake_restarts(zed_server: ZedServer, lake: LakeClient) -> None:
    sources = ["a", "b", "c"]
    per_source, chunk = 240, 8
    for s in sources:
        lake.create_pool(s)
    ingress = Pipeline(PipelineConfig(id="ingress:sink/all", dst=Source("sink"), flow="cut ts,src,seq"),
                       fixed([Source(s) for s in sources]), ("Room", "default", "sink"))
    stop_loading = threading.Event()
    progress = {s: 0 for s in sources}

    def loader(src: str, offset: int) -> None:
        # Each source loads chunks with increasing ts; a failed load (lake down) is retried.
        with LakeClient(zed_server.url, timeout=5) as client:
            while progress[src] < per_source and not stop_loading.is_set():
                n = progress[src]
                base = T0 + timedelta(seconds=n, milliseconds=offset)
                try:
                    client.load(src, "main", _seq_records(src, n, chunk, base))
                except LakeError:
                    time.sleep(0.1)
                    continue
                progress[src] = n + chunk

    def moved() -> int:
        try:
            return lake.record_count("sink")
        except LakeError:
            return 0

    loaders = [threading.Thread(target=loader, args=(s, i * 100), daemon=True) for i, s in enumerate(sources)]
    piper = Piper(zed_server.url, batch_size=7, poll_interval=1, min_backoff=0.1, max_backoff=1)
    piper.apply(ingress)
    piper.start()
    for t in loaders:
        t.start()
    try:
        wait_for(lambda: moved() >= 60, what="records to start moving")
        piper.stop()  # the manager goes away mid-stream...
        piper = Piper(zed_server.url, batch_size=7, poll_interval=1, min_backoff=0.1, max_backoff=1)
        piper.apply(ingress)  # ...and a new one takes over with no memory of the old one
        piper.start()
        wait_for(lambda: moved() >= 250, what="records to move after the manager restart")
        zed_server.restart()  # the lake goes away mid-stream too
        for t in loaders:
            t.join(120)
        total = per_source * len(sources)
        wait_for(lambda: moved() == total and piper.idle(), timeout=120,
                 what=lambda: f"all records to arrive: {moved()} of {total}, loaded {progress}, {piper.snapshot()}")
    finally:
        stop_loading.set()
        piper.stop()
    # Read in commit order (a plain `from` comes back sorted by ts whatever the loads did): each
    # commit's ts above every earlier one's, and every source's records in the order it loaded them.
    rows = in_commit_order(lake, "sink")
    assert len(rows) == total
    assert len({(r["src"], r["seq"]) for r in rows}) == total, "a record arrived twice"
    for s in sources:
        assert [r["seq"] for r in rows if r["src"] == s] == list(range(per_source)), f"{s} out of order"


def test_flow_syntax_error_pauses_then_fix_resumes_from_watermark(lake: LakeClient) -> None:
    lake.create_pool("l1")
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=i), "watt": float(i)} for i in range(3)])
    good = egress("l1", flow="cut ts,watt")
    run = PipelineRun(good, lake, batch_size=2)
    drain(run)
    assert lake.query('from "l1"@"energy" | sum(watt)') == [3.0]
    bad = egress("l1", flow="cut ts,watt | sum(")
    run.update(bad)
    drain(run)  # reported at once, before any new record arrives
    assert run.status.state == ERROR
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=10 + i), "watt": 10.0} for i in range(3)])
    drain(run)
    assert run.status.state == ERROR
    assert "error parsing Zed" in run.status.message and "sum(" in run.status.message
    assert run.step() is False and run.status.errors_total == 1  # stays paused, no retry storm
    # records wait since T0+10s: the lag counts from then (T0 is long past)
    assert run.status.lag_seconds >= (datetime.now(UTC) - T0 - timedelta(seconds=11)).total_seconds()
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=20), "watt": 100.0}])
    run.update(good)
    drain(run)
    assert run.status.state == RUNNING
    assert lake.query('from "l1"@"energy" | sum(watt)') == [3.0 + 30.0 + 100.0]
    assert lake.record_count("l1", "energy") == 7


def test_watermark_survives_a_new_run(lake: LakeClient) -> None:
    lake.create_pool("l1")
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=i), "watt": 1.0} for i in range(5)])
    drain(PipelineRun(egress("l1", flow="cut ts,watt"), lake, batch_size=2))
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=9), "watt": 1.0}])
    fresh = PipelineRun(egress("l1", flow="cut ts,watt"), lake, batch_size=2)
    drain(fresh)
    assert lake.record_count("l1", "energy") == 6
    assert fresh.status.watermarks == {"l1@main": "2026-01-01T00:00:09Z"}


def test_pause_and_skip_history(lake: LakeClient) -> None:
    lake.create_pool("l1")
    lake.load("l1", "main", [{"ts": T0, "watt": 1.0}])
    paused = Pipeline(PipelineConfig(id="p", dst=Source("d1"), pause=True), fixed([Source("l1")]), ("X", "d", "p"))
    run = PipelineRun(paused, lake)
    drain(run)
    assert run.status.state == PAUSED and "d1" not in [p.name for p in lake.pools()]
    assert run.status.lag_seconds > 0
    skip = Pipeline(PipelineConfig(id="s", dst=Source("d2"), skip_history=True), fixed([Source("l1")]),
                    ("X", "d", "s"))
    run = PipelineRun(skip, lake)
    drain(run)
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=1), "watt": 2.0}])
    drain(run)
    assert lake.query('from "d2" | yield watt') == [2.0]


def test_patch_source_tags_records(lake: LakeClient) -> None:
    for p in ("l1", "l2"):
        lake.create_pool(p)
        lake.load(p, "main", [{"ts": T0, "watt": 1.0}])
    run = PipelineRun(Pipeline(PipelineConfig(id="i", dst=Source("room"), patch_source=True),
                               fixed([Source("l1"), Source("l2")]), ("Room", "d", "room")), lake)
    drain(run)
    assert sorted(lake.query('from "room" | yield source')) == ["l1@main", "l2@main"]


def test_one_batch_from_several_sources_keeps_each_sources_order(lake: LakeClient) -> None:
    """Every moved record gets its own `ts`, in the sources' `ts` order: with one stamp for the
    whole batch the destination (sorted by `ts`) could put a lamp's 'off' before its 'on'."""
    for pool in ("oa", "ob", "odst"):
        lake.create_pool(pool)
    lake.load("oa", "main", [{"ts": T0 + timedelta(milliseconds=i), "seq": i, "watt": w}
                             for i, w in enumerate([3.6, 0.0, 3.6, 0.0])])
    lake.load("ob", "main", [{"ts": T0 + timedelta(milliseconds=i, microseconds=500), "seq": i}
                             for i in range(4)])
    run = PipelineRun(Pipeline(PipelineConfig(id="ingress:odst/all", dst=Source("odst"), patch_source=True),
                               fixed([Source("oa"), Source("ob")]), ("Room", "default", "odst")),
                      lake, batch_size=10)
    drain(run)
    rows = lake.query('from "odst" | sort ts')
    assert len({r["ts"] for r in rows}) == len(rows) == 8
    assert [r["watt"] for r in rows if r["source"] == "oa@main"] == [3.6, 0.0, 3.6, 0.0]
    assert [r["seq"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3]  # interleaved by source time


def test_pool_names_with_quotes_and_bars_cannot_alter_the_query(lake: LakeClient) -> None:
    evil_src = 'l1" | yield "pwned'
    evil_dst = 'room") | drop * | yield ("'
    for p in (evil_src, "l1"):
        lake.create_pool(p)
    lake.load("l1", "main", [{"ts": T0, "secret": "do not move"}])
    lake.load(evil_src, "main", [{"ts": T0 + timedelta(seconds=i), "watt": float(i)} for i in range(3)])
    run = PipelineRun(Pipeline(PipelineConfig(id='i"d|x', dst=Source(evil_dst, 'e"|b'), patch_source=True),
                               fixed([Source(evil_src), Source("l1", "nope")]), ("Room", "d", "r")), lake)
    drain(run)
    assert run.status.state == RUNNING, run.status.message
    rows = lake.query(f"from {zed.pool_ref(evil_dst, 'e' + chr(34) + '|b')}")
    assert sorted(r["watt"] for r in rows) == [0.0, 1.0, 2.0]
    assert {r["source"] for r in rows} == {f"{evil_src}@main"}
    assert "waiting for l1@nope" in run.status.message


def test_without_eoio_a_restart_starts_at_the_sources_end(lake: LakeClient) -> None:
    lake.create_pool("l1")
    lake.load("l1", "main", [{"ts": T0, "watt": 1.0}])
    config = PipelineConfig(id="e", dst=Source("d"), eoio=False)
    drain(PipelineRun(Pipeline(config, fixed([Source("l1")]), ("X", "d", "e")), lake))
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=1), "watt": 2.0}])
    restarted = PipelineRun(Pipeline(config, fixed([Source("l1")]), ("X", "d", "e")), lake)
    drain(restarted)
    lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=2), "watt": 4.0}])
    drain(restarted)
    assert lake.query('from "d" | yield watt') == [4.0]
    assert lake.commit_meta("d", "main", 'meta.pipelet=="e"') is None


def test_records_committed_while_the_stream_was_down_are_found_after_reconnect(
        zed_server: ZedServer, lake: LakeClient) -> None:
    lake.create_pool("l1")
    lake.load("l1", "main", [{"ts": T0, "watt": 1.0}])
    # No safety-net poll: only the event stream and its reconnect re-check can wake the pipeline.
    piper = Piper(zed_server.url, poll_interval=3600)
    piper.events.min_backoff = 5.0  # reconnect late enough that the load below happens while disconnected
    piper.apply(egress("l1", flow="cut ts,watt"))
    piper.start()
    try:
        wait_for(lambda: query(lake, 'from "l1"@"energy" | count()') == [1], what="the first record")
        wait_for(piper.idle, what="the piper to settle")  # so no step is in flight (or retried) over the restart
        zed_server.restart()
        lake.load("l1", "main", [{"ts": T0 + timedelta(seconds=1), "watt": 2.0}])  # no one hears this event
        wait_for(lambda: query(lake, 'from "l1"@"energy" | sum(watt)') == [3.0], what="the re-check to move it")
    finally:
        piper.stop()


def test_multi_hop_lamps_to_room_to_its_egress_with_staggered_late_and_backlogged_loads(
        lake: LakeClient) -> None:
    """The shipped room: ingress (lamps' energy → room@main) feeding an egress of the same digi
    (room@main → room@energy). Every lamp record, and the room driver's own, reaches room@energy
    exactly once and in commit order, however the loads and the pipeline steps interleave."""
    mounts = ["l1", "l2"]
    stamps = Stamps()  # one piper: its pipelines share the stamp sequence per destination

    def run(pipeline: Pipeline) -> PipelineRun:
        return PipelineRun(pipeline, lake, batch_size=3, stamps=stamps)

    lamps = {n: run(egress(n, flow="has(watt)")) for n in ("l1", "l2", "l3")}
    room_in = run(Pipeline(
        PipelineConfig(id="ingress:room/device_energy", dst=Source("room"), patch_source=True),
        lambda: [Source(m, "energy") for m in mounts], ("Room", "default", "room")))
    room_out = run(Pipeline(PipelineConfig(id="egress:room/energy", dst=Source("room", "energy"), flow="has(watt)"),
                            fixed([Source("room")]), ("Room", "default", "room")))
    seqs: dict[str, int] = {}

    def load(pool: str, n: int, at: datetime | None = None) -> None:
        """n records as a driver loads them: one commit, ts = the load time (or `at`); the records
        of one load share their ts, so only separate loads have an order."""
        start = seqs.get(pool, 0)
        moment = at or datetime.now(UTC)
        lake.load(pool, "main", [{"ts": moment, "watt": 1.0, "who": pool, "seq": start + i} for i in range(n)])
        seqs[pool] = start + n

    for p in ("l1", "l2", "l3", "room"):
        lake.create_pool(p)
    for i in range(4):
        load("l3", 1, at=T0 + timedelta(seconds=i))  # history from long ago, mounted only later
    load("l1", 1)
    time.sleep(0.01)
    load("l2", 1)  # later than l1's record...
    for r in (lamps["l2"], room_in, room_out):  # ...but l2's egress runs first
        drain(r)
    for r in (lamps["l1"], room_in, room_out):
        drain(r)
    for _ in range(10):
        load("l1", 1)  # a backlog of several batches
    load("l2", 2)
    for r in (lamps["l1"], lamps["l2"], room_in):
        r.step()  # one batch each, then the room's egress catches up halfway
    drain(room_out)
    for r in (lamps["l1"], lamps["l2"], room_in, room_out):
        drain(r)
    mounts.append("l3")
    for r in (lamps["l3"], room_in, room_out):
        drain(r)
    # The room's driver stamped a record just before the piper's last write but committed it after:
    # it lands in room@main below what the room's egress has already moved.
    last = max(datetime.fromisoformat(r["ts"]) for r in lake.query('from "room"'))
    load("room", 1, at=last - timedelta(milliseconds=5))
    load("l2", 1)
    drain(lamps["l2"])
    drain(room_in)
    drain(room_out)
    # A restarted piper (no memory, new stamps) moves nothing twice.
    drain(PipelineRun(room_out.pipeline, lake, batch_size=3))

    rows = in_commit_order(lake, "room", "energy")
    got = [(r["who"], r["seq"]) for r in rows]
    assert sorted(got) == sorted((p, i) for p, n in seqs.items() for i in range(n)), "lost or repeated"
    for p, n in seqs.items():
        assert [s for who, s in got if who == p] == list(range(n)), f"{p} out of order"
    assert all(r["event_ts"] for r in rows) and {r["source"] for r in rows if r["who"] != "room"} == {
        "l1@energy", "l2@energy", "l3@energy"}
    # The lamps' own time survives the hops in event_ts (l3's history is from T0).
    assert [datetime.fromisoformat(r["event_ts"]) for r in rows if r["who"] == "l3"] == [
        T0 + timedelta(seconds=i) for i in range(4)]
