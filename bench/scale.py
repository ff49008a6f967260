"""Scale: N lamps in rooms of 100, one manager — memory, idle CPU, watches, resync, throughput.

For each N (100, 1,000, 10,000; `--quick`: 100), cumulatively in one space:

1. *Build.* The bench lamp and room kinds are put in the manager's
   shared-worker mode (`digi.dev/worker-mode: shared` on their CRDs: one
   process per kind hosts all its digis, per-digi tokens intact). Lamps
   `s-l<i>` and rooms `s-r<j>` are started with `digi run`; each room then
   mounts its 100 lamps with one PATCH writing the mount entries
   (`{mode: hide, status: active}`, what `digi mount` writes per child). Done
   when every lamp's status equals its intent and every replica is filled.
2. *Footprint*, after 5 s of quiet: the manager's RSS (and, separately, the sum
   over its worker processes); the WATCH requests the API server holds
   (`apiserver_longrunning_requests{verb="WATCH"}` on its /metrics) minus the
   baseline taken before the manager started — the benchmark itself holds no
   watch then, and workers hold no credentials, so the difference is the
   manager's; CPU seconds of the manager (and workers) over an idle window of
   60 s (20 s in --quick), reported as % of one core.
3. *Throughput*: room intents are written open-loop at OFFERED_ROOM_UPDATES
   per second (each reaches 100 lamps: 600 offered propagations/s) for 30 s
   (10 s in --quick). A propagation is one (room update, lamp) pair; its
   latency runs from the room's PATCH being issued to the first lamp handler
   start with that intent or a newer one of the same room (a newer intent
   legitimately supersedes). Throughput = propagations completed / (last
   completion - first PATCH).
4. *Resync*: once every replica is current (settled: see `resync` for why),
   the manager is stopped (SIGTERM), every room's intent is changed
   while it is down, and the clock runs from starting it again until every lamp
   and every room shows the new value as status (seen through a watch).
"""

from __future__ import annotations

import bisect
import contextlib
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import psutil

from bench.context import GROUP, LAMPS, NAMESPACE, ROOMS, Context, brightness_status
from bench.floor import FLOORS
from bench.kube import JSON, Kube, Watcher, ensure_crd
from bench.results import Figure, Results, Target
from bench.space import wait_for
from digi.kinds import load_kind

PER_ROOM = 100
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WORKER_MODE = "digi.dev/worker-mode"  # the manager's opt-in annotation (manager/workers/base.py)
DIGI_KIND_LABEL = "digi.dev/kind"
OFFERED_ROOM_UPDATES = 6.0
LAMP_GVR = f"{GROUP}/v1/lamps"


def sizes(quick: bool) -> list[int]:
    return [100] if quick else [100, 1000, 10000]


def _at_most(bound: float, field: str = "value") -> Target:
    def check(fig: Figure, _res: Results) -> bool:
        x = fig.value if field == "value" else getattr(fig, field)
        return x is not None and x <= bound
    return Target(f"{field} ≤ {bound:g}", check)


def planned(ctx: Context) -> list[Figure]:
    figs = []
    for n in sizes(ctx.quick):
        big = n == 10000

        def f(key: str, title: str, unit: str, targets: list[Target] | None = None,
              n: int = n, big: bool = big, every_n: bool = False) -> Figure:
            # The footprint targets are stated for 10,000 digis; the throughput one for any N.
            return Figure.missing(f"scale.{n}.{key}", f"N={n}: {title}", unit, "not run",
                                  targets=targets if big or every_n else None)

        def watches_ok(fig: Figure, _res: Results) -> bool:
            return fig.value is not None and fig.value == fig.extra.get("digi_kinds")

        def idle_ok(fig: Figure, _res: Results) -> bool:
            return fig.value is not None and fig.value < 5.0

        def rate_ok(fig: Figure, _res: Results) -> bool:
            return fig.value is not None and fig.value >= 500

        figs += [
            f("manager_rss", "manager RSS", "MiB", [_at_most(1024)]),
            f("workers_rss", "RSS of all worker processes", "MiB"),
            f("idle_cpu", "manager CPU while idle", "% of a core",
              [Target("< 5 % of a core", idle_ok)]),
            f("digi_watches", "manager's WATCHes on digi kinds", "watches",
              [Target("= number of digi kinds", watches_ok)]),
            f("watches", "manager's WATCHes, all resources", "watches"),
            f("resync", "manager restart → every digi reconciled", "s", [_at_most(60)]),
            f("throughput", "propagations/s sustained", "1/s",
              [Target("≥ 500 /s", rate_ok)], every_n=True),
            f("down_latency", "room intent → lamp handler, under load", "ms",
              [_at_most(200, "p99")], every_n=True),
        ]
    return figs


# -- building ---------------------------------------------------------------------------------

def lamp_name(i: int) -> str:
    return f"s-l{i}"


def room_name(j: int) -> str:
    return f"s-r{j}"


def _names(kube: Kube, collection: str) -> set[str]:
    """Names in `collection`; none when its kind is not defined yet (404)."""
    listing = kube.request("GET", collection, ok_missing=True)
    return {o["metadata"]["name"] for o in listing.get("items", [])}


def build(ctx: Context, n: int) -> None:
    lamps = [lamp_name(i) for i in range(n)]
    rooms = [room_name(j) for j in range(n // PER_ROOM)]
    have_lamps = _names(ctx.kube, LAMPS.collection(NAMESPACE))
    have_rooms = _names(ctx.kube, ROOMS.collection(NAMESPACE))
    ctx.run_digis("lamp", [x for x in lamps if x not in have_lamps])
    new_rooms = [x for x in rooms if x not in have_rooms]
    ctx.run_digis("room", new_rooms)
    for room in new_rooms:
        j = int(room.removeprefix("s-r"))
        entries = {f"{NAMESPACE}/{lamp_name(i)}": {"mode": "hide", "status": "active"}
                   for i in range(j * PER_ROOM, (j + 1) * PER_ROOM)}
        ctx.kube.merge_patch(ROOMS.item(NAMESPACE, room), {"spec": {"mount": {LAMP_GVR: entries}}})
    wait_for(lambda: _converged(ctx.kube, n), 120 + n / 10, f"{n} lamps reconciled and mounted",
             interval=max(1.0, n / 2000))  # a LIST of 10,000 lamps is itself real load


def _converged(kube: Kube, n: int, *, current: bool = False) -> bool:
    """Every lamp's status equals its intent and every room holds a replica of each of its
    lamps; `current`: each replica also carries its lamp's generation (nothing in flight)."""
    lamps = kube.get(LAMPS.collection(NAMESPACE))["items"]
    ready = {o["metadata"]["name"]: o["metadata"].get("generation") for o in lamps
             if o["metadata"]["name"].startswith("s-l")
             and brightness_status(o) == o["spec"]["control"]["brightness"]["intent"]}
    if len(ready) < n:
        return False
    rooms = kube.get(ROOMS.collection(NAMESPACE))["items"]
    filled = sum(1 for r in rooms if r["metadata"]["name"].startswith("s-r")
                 for key, rep in r["spec"].get("mount", {}).get(LAMP_GVR, {}).items()
                 if rep.get("spec")
                 and (not current or rep.get("generation") == ready.get(key.rpartition("/")[2])))
    return filled >= n


# -- footprint --------------------------------------------------------------------------------

_WATCH_LINE = re.compile(r'^apiserver_longrunning_requests\{(?P<labels>[^}]*)\} (?P<v>\S+)$')


# The floor section's own watch: it may still be closing when the baseline is taken, and
# the manager never watches it (floors are no digi kind), so it is left out on both sides.
BENCH_OWN = {f"{FLOORS.group}/{FLOORS.plural}"}


def watch_counts(kube: Kube) -> dict[str, int]:
    """WATCH requests the API server holds right now, by `group/resource` (but the bench's own)."""
    counts: dict[str, int] = defaultdict(int)
    for line in kube.text("/metrics").splitlines():
        m = _WATCH_LINE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("verb") == "WATCH":
            counts[f"{labels.get('group', '')}/{labels.get('resource', '')}"] += int(float(m["v"]))
    return {r: c for r, c in counts.items() if r not in BENCH_OWN}


def _rss_mib(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def footprint(ctx: Context, n: int, baseline: dict[str, int]) -> Iterator[Figure]:
    time.sleep(5)
    mgr = ctx.bs.manager_process()
    workers = mgr.children(recursive=True)
    key = f"scale.{n}"
    yield Figure(f"{key}.manager_rss", f"N={n}: manager RSS", "MiB", value=_rss_mib([mgr]), trials=1)
    yield Figure(f"{key}.workers_rss", f"N={n}: RSS of all worker processes", "MiB",
                 value=_rss_mib(workers), trials=1, extra={"worker_processes": len(workers)})
    now = watch_counts(ctx.kube)
    diff = {r: now.get(r, 0) - baseline.get(r, 0) for r in set(now) | set(baseline)}
    diff = {r: c for r, c in sorted(diff.items()) if c}
    digi = sum(c for r, c in diff.items() if r.startswith(f"{GROUP}/"))
    # Every digi kind of the bench group the space has then: lamps and rooms, and the data
    # section's kinds when it ran before.
    kinds = ctx.kube.request("GET", CRDS, params={"labelSelector": f"{DIGI_KIND_LABEL}=true"})["items"]
    yield Figure(f"{key}.digi_watches", f"N={n}: manager's WATCHes on digi kinds", "watches",
                 value=float(digi), trials=1,
                 extra={"by_resource": diff,
                        "digi_kinds": sum(1 for c in kinds if c["spec"]["group"] == GROUP)})
    yield Figure(f"{key}.watches", f"N={n}: manager's WATCHes, all resources", "watches",
                 value=float(sum(diff.values())), trials=1, extra={"by_resource": diff})
    window = 20.0 if ctx.quick else 60.0
    c0, w0 = _cpu_seconds([mgr]), _cpu_seconds(workers)
    time.sleep(window)
    c1, w1 = _cpu_seconds([mgr]), _cpu_seconds(workers)
    yield Figure(f"{key}.idle_cpu", f"N={n}: manager CPU while idle", "% of a core",
                 value=100 * (c1 - c0) / window, trials=1,
                 extra={"window_s": window, "manager_cpu_s": round(c1 - c0, 3),
                        "workers_cpu_s": round(w1 - w0, 3)})


# -- throughput -------------------------------------------------------------------------------

@dataclass
class Update:
    room: int
    value: float
    t0: float


def drive(ctx: Context, rooms: int, seconds: float) -> list[Update]:
    """Write room intents open-loop at OFFERED_ROOM_UPDATES/s, round robin over rooms."""
    updates: list[Update] = []
    interval = 1.0 / OFFERED_ROOM_UPDATES
    start = time.monotonic()
    k = 0
    while (due := start + k * interval) < start + seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        room = k % rooms
        value = ctx.next_value()
        updates.append(Update(room, value, ctx.set_intent(ROOMS, room_name(room), value)))
        k += 1
    return updates


class Outcome(NamedTuple):
    latencies: list[float]  # ms, one per completed propagation
    rate: float  # completed propagations per second
    never_completed: int
    superseded: int  # completed by a newer intent of the same room, not by the value itself


def analyse(updates: list[Update], log: list[JSON]) -> Outcome:
    by_lamp: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for msg in log:
        if msg["ev"] == "lamp" and msg["v"] is not None:
            by_lamp[msg["digi"]].append((float(msg["v"]), float(msg["start"])))
    # For each lamp: values ascending, with the earliest start among all values ≥ v.
    index: dict[str, tuple[list[float], list[float]]] = {}
    for lamp, seen in by_lamp.items():
        seen.sort()
        values = [v for v, _ in seen]
        suffix_min = [s for _, s in seen]
        for i in range(len(suffix_min) - 2, -1, -1):
            suffix_min[i] = min(suffix_min[i], suffix_min[i + 1])
        index[lamp] = (values, suffix_min)
    latencies: list[float] = []
    missing = superseded = 0
    last = 0.0
    for u in updates:
        for i in range(u.room * PER_ROOM, (u.room + 1) * PER_ROOM):
            values, suffix_min = index.get(lamp_name(i), ([], []))
            pos = bisect.bisect_left(values, u.value)
            if pos == len(values):
                missing += 1
                continue
            if values[pos] != u.value:
                superseded += 1
            done = suffix_min[pos]
            latencies.append(1e3 * (done - u.t0))
            last = max(last, done)
    rate = len(latencies) / (last - updates[0].t0) if latencies and last > updates[0].t0 else 0.0
    return Outcome(latencies, rate, missing, superseded)


def throughput(ctx: Context, n: int) -> Iterator[Figure]:
    seconds = 10.0 if ctx.quick else 30.0
    ctx.probe.log.clear()
    ctx.probe.recording = True
    try:
        with ctx.profiled(f"scale-{n}-throughput"):
            updates = drive(ctx, n // PER_ROOM, seconds)
            time.sleep(10.0)  # drain: let the last updates arrive
    finally:
        ctx.probe.recording = False
    out = analyse(updates, ctx.probe.log)
    ctx.probe.log.clear()
    extra = {"offered_propagations_per_s": OFFERED_ROOM_UPDATES * PER_ROOM,
             "room_updates": len(updates), "seconds": seconds,
             "never_completed": out.never_completed, "superseded": out.superseded}
    yield Figure(f"scale.{n}.throughput", f"N={n}: propagations/s sustained", "1/s",
                 value=out.rate, trials=len(out.latencies), extra=extra)
    yield Figure(f"scale.{n}.down_latency", f"N={n}: room intent → lamp handler, under load",
                 "ms", samples=out.latencies, trials=len(out.latencies), extra=extra)


# -- resync -----------------------------------------------------------------------------------

def resync(ctx: Context, n: int) -> Iterator[Figure]:
    rooms = n // PER_ROOM
    value = ctx.next_value()
    pending = {lamp_name(i) for i in range(n)} | {room_name(j) for j in range(rooms)}
    lock = threading.Lock()
    done = threading.Event()

    def seen(_type: str, obj: JSON) -> None:
        if brightness_status(obj) == value:
            with lock:
                pending.discard(obj["metadata"]["name"])
                if not pending:
                    done.set()

    # The restart starts from a settled space. A replica that is behind its lamp when the
    # manager stops is stale after the restart (the mounter's last-synced state is in memory),
    # and by the generation guard of §5.2 the lamp's state then wins over a room intent
    # written meanwhile: that intent correctly never reaches the lamp, and nothing would be
    # measured.
    wait_for(lambda: _converged(ctx.kube, n, current=True), 300 + n / 10,
             f"{n} lamps settled before the restart", interval=max(1.0, n / 2000))
    proc = ctx.bs.manager_process()
    proc.terminate()
    proc.wait(timeout=60)
    for j in range(rooms):
        ctx.set_intent(ROOMS, room_name(j), value)
    watchers = [Watcher(ctx.bs.kubeconfig, res.collection(NAMESPACE), seen)
                for res in (LAMPS, ROOMS)]
    try:
        t0 = time.monotonic()
        ctx.bs.space.up(manager=True)
        started = time.monotonic() - t0
        if not done.wait(600):
            raise TimeoutError(f"{len(pending)} digis not reconciled 600 s after the restart")
        took = time.monotonic() - t0
    finally:
        for w in watchers:
            w.close()
    yield Figure(f"scale.{n}.resync", f"N={n}: manager restart → every digi reconciled", "s",
                 value=took, trials=1, extra={"manager_ready_s": round(started, 3)})


def share_workers(ctx: Context) -> None:
    """Put the bench lamp and room kinds in the manager's shared-worker mode.

    Their CRDs (made from the kinds' model.yaml, as `digi run` makes them) get
    `digi.dev/worker-mode: shared`: one worker process per kind and namespace
    hosts every digi of it, each with its own token. Digis that already run in
    their own process (from earlier sections) move into the shared one.
    """
    for kind in ("lamp", "room"):
        crd = load_kind(ctx.kind_dir(kind)).crd()
        crd["metadata"].setdefault("labels", {})[DIGI_KIND_LABEL] = "true"
        ensure_crd(ctx.kube, crd)
        ctx.kube.merge_patch(f"{CRDS}/{crd['metadata']['name']}",
                             {"metadata": {"annotations": {WORKER_MODE: "shared"}}})


def measure(ctx: Context) -> Iterator[Figure]:
    baseline = ctx.watch_baseline
    share_workers(ctx)
    for n in sizes(ctx.quick):
        build(ctx, n)
        yield from footprint(ctx, n, baseline)
        yield from throughput(ctx, n)
        yield from resync(ctx, n)

