"""Propagation latency: Lamp, Room→Lamp and depth-d chains, FPT and BPT.

Definitions (bench/README.md has the full text):
- Lamp FPT: a client's PATCH of the lamp's intent is issued → the lamp driver's
  handler starts. Lamp BPT: the lamp handler ends (the engine's status write
  follows) → a watching client sees the status. 1 API write each.
- Depth-d chain (d = 1 is Room→Lamp): rooms r0 → r1 → … → r(d-1) → lamp, each
  mounting the next. FPT: the PATCH of r0's intent is issued → the lamp handler
  starts; 1 + 2d API writes (the client's, then per level the parent driver's
  replica write and the mounter's child write). BPT: the lamp handler ends →
  r0's mount handler starts with that status in its replica; 2d API writes (per
  level the child's status write and the mounter's replica write).
Each trial writes a fresh value; the value identifies the trial in every probe.
Right after each trial, floor(k) is measured for the FPT's and the BPT's k
(the *paired floor*, `extra.paired_floor_*`): on a shared machine the load
drifts, and a floor taken seconds apart from its figure sees the same load.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator

from bench.context import LAMPS, NAMESPACE, ROOMS, Context, brightness_status
from bench.floor import FloorProbe
from bench.kube import JSON, Watcher
from bench.marks import Timeout
from bench.results import Figure, Results, Target, percentile
from bench.trials import Samples, run

DEPTHS = (1, 2, 3, 4, 5)
PAPER = {"lamp.fpt": 18.7, "lamp.bpt": 16.1, "room_lamp.fpt": 47.3, "room_lamp.bpt": 38.9}
READY_TIMEOUT = 60.0
READY_ATTEMPTS = 3
TRIAL_TIMEOUT = 10.0


def chain_key(d: int, way: str) -> str:
    return f"room_lamp.{way}" if d == 1 else f"chain.d{d}.{way}"


def _room_lamp_target(way: str) -> list[Target]:
    paper = PAPER[f"room_lamp.{way}"]

    def check(fig: Figure, res: Results) -> bool:
        r50, _ = res.ratios(fig)
        return r50 is not None and r50 <= 1.5 and fig.p50 is not None and fig.p50 < paper
    return [Target(f"p50 ≤ 1.5 x floor and < paper's {paper} ms", check)]


def planned() -> list[Figure]:
    figs = [
        Figure.missing("lamp.fpt", "Lamp FPT: client intent PATCH → lamp handler starts", "ms",
                       "not run", api_writes=1),
        Figure.missing("lamp.bpt", "Lamp BPT: lamp handler ends → watching client sees status",
                       "ms", "not run", api_writes=1),
    ]
    for d in DEPTHS:
        name = "Room→Lamp" if d == 1 else f"depth-{d} chain"
        figs.append(Figure.missing(
            chain_key(d, "fpt"), f"{name} FPT: top intent PATCH → lamp handler starts", "ms",
            "not run", api_writes=1 + 2 * d,
            targets=_room_lamp_target("fpt") if d == 1 else None))
        figs.append(Figure.missing(
            chain_key(d, "bpt"), f"{name} BPT: lamp handler ends → top room handler sees it", "ms",
            "not run", api_writes=2 * d,
            targets=_room_lamp_target("bpt") if d == 1 else None))
    figs += [
        Figure.missing("chain.fpt_per_level", "FPT cost per mount level (slope of p50 over d=1..5)",
                       "ms", "not run"),
        Figure.missing("chain.bpt_per_level", "BPT cost per mount level (slope of p50 over d=1..5)",
                       "ms", "not run"),
    ]
    return figs


def _latency(key: str, samples: Samples, name: str, ctx: Context, api_writes: int) -> Figure:
    title = next(f.title for f in planned() if f.key == key)
    values = samples.by_name.get(name, [])
    paired = samples.by_name.get(f"{name}_floor", [])
    extra: dict[str, float] = {"lost": samples.lost} if samples.lost else {}
    if values and paired:
        extra |= {"paired_floor_p50": round(percentile(paired, 50), 4),
                  "paired_floor_p99": round(percentile(paired, 99), 4),
                  "ratio_to_paired_floor_p50": round(
                      percentile(values, 50) / percentile(paired, 50), 4)}
    return Figure(key, title, "ms", samples=values, trials=len(values), warmup=ctx.plan.warmup,
                  api_writes=api_writes, extra=extra)


def _measure(ctx: Context, what: str, set_intent: Callable[[float], float],
             observe: Callable[[float, float, float], tuple[float, float]],
             writes: tuple[int, int]) -> Samples:
    """Warm-up + trials of one FPT/BPT pair, each trial followed by its paired floors.

    `observe(v, t0, timeout)` waits for the trial's marks and returns (FPT, BPT) in
    seconds. After each trial, floor(k) is measured right away for the FPT's and
    the BPT's number of writes, so the figure and its floor see the same load.
    """
    with FloorProbe(ctx.bs.kubeconfig) as floor:
        def trial(_i: int, timeout: float = TRIAL_TIMEOUT) -> dict[str, float]:
            v = ctx.next_value()
            fpt, bpt = observe(v, set_intent(v), timeout)
            return {"fpt": 1e3 * fpt, "bpt": 1e3 * bpt,
                    "fpt_floor": 1e3 * floor.round_trips(writes[0]),
                    "bpt_floor": 1e3 * floor.round_trips(writes[1])}

        _ready(what, trial)
        with ctx.profiled(what) if what == "room_lamp" else contextlib.nullcontext():
            return run(what, ctx.plan, trial)


def _ready(what: str, trial: Callable[[int, float], dict[str, float]]) -> None:
    """One trial with a long timeout: workers start, mounts settle. A lost intent is retried."""
    for attempt in range(READY_ATTEMPTS):
        try:
            trial(-1, READY_TIMEOUT)
            return
        except Timeout as exc:
            print(f"  {what}: not ready (attempt {attempt + 1}): {exc}", file=sys.stderr)
    raise Timeout(f"{what}: no trial completed in {READY_ATTEMPTS} attempts of "
                  f"{READY_TIMEOUT} s; see the manager's and workers' logs (--keep)")


def lamp(ctx: Context) -> list[Figure]:
    name = "bl-0"
    ctx.run_digis("lamp", [name])

    def seen(_type: str, obj: JSON) -> None:
        now = time.monotonic()
        status = brightness_status(obj)
        if status is not None:
            ctx.marks.mark(("watch", obj["metadata"]["name"], status), now)

    def observe(v: float, t0: float, timeout: float) -> tuple[float, float]:
        start = ctx.marks.wait(("start", "lamp", name, v), timeout)
        end = ctx.marks.wait(("end", "lamp", name, v), timeout)
        shown = ctx.marks.wait(("watch", name, v), timeout)
        return start - t0, shown - end

    watcher = Watcher(ctx.bs.kubeconfig, LAMPS.collection(NAMESPACE), seen)
    try:
        s = _measure(ctx, "lamp", lambda v: ctx.set_intent(LAMPS, name, v), observe, (1, 1))
    finally:
        watcher.close()
    return [_latency("lamp.fpt", s, "fpt", ctx, 1), _latency("lamp.bpt", s, "bpt", ctx, 1)]


def build_chain(ctx: Context, d: int) -> tuple[str, str]:
    """Rooms c<d>-r0 … c<d>-r<d-1> and lamp c<d>-lamp, each mounted under the previous."""
    rooms = [f"c{d}-r{i}" for i in range(d)]
    leaf = f"c{d}-lamp"
    ctx.run_digis("room", rooms)
    ctx.run_digis("lamp", [leaf])
    for parent, child in itertools.pairwise(rooms):
        ctx.mount(child, ROOMS, parent, ROOMS)
    ctx.mount(leaf, LAMPS, rooms[-1], ROOMS)
    return rooms[0], leaf


def chain(ctx: Context, d: int) -> list[Figure]:
    top, leaf = build_chain(ctx, d)

    def observe(v: float, t0: float, timeout: float) -> tuple[float, float]:
        start = ctx.marks.wait(("start", "lamp", leaf, v), timeout)
        end = ctx.marks.wait(("end", "lamp", leaf, v), timeout)
        up = ctx.marks.wait(("start", "up", top, v), timeout)
        return start - t0, up - end

    what = "room_lamp" if d == 1 else f"chain-d{d}"
    s = _measure(ctx, what, lambda v: ctx.set_intent(ROOMS, top, v), observe, (1 + 2 * d, 2 * d))
    return [_latency(chain_key(d, "fpt"), s, "fpt", ctx, 1 + 2 * d),
            _latency(chain_key(d, "bpt"), s, "bpt", ctx, 2 * d)]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def per_level(figs: list[Figure], way: str, results: Results) -> Figure:
    """The cost of one more mount level: the slope of p50 over depth, next to the floor's."""
    points = [(float(d), f.p50) for d in DEPTHS for f in figs
              if f.key == chain_key(d, way) and f.p50 is not None]
    title = next(f.title for f in planned() if f.key == f"chain.{way}_per_level")
    fig = Figure(f"chain.{way}_per_level", title, "ms", value=slope(points), trials=len(points))
    floors = [(float(k), f.p50) for k in range(1, 12)
              if (f := results.floor(k)) is not None and f.p50 is not None]
    if len(floors) >= 2:
        # Each level adds 2 API writes in both directions.
        fig.extra = {"floor_per_level": round(2 * slope(floors), 4)}
    return fig


def measure(ctx: Context) -> Iterator[Figure]:
    yield from lamp(ctx)
    figs: list[Figure] = []
    for d in DEPTHS:
        figs += chain(ctx, d)
        yield from figs[-2:]
    yield per_level(figs, "fpt", ctx.results)
    yield per_level(figs, "bpt", ctx.results)
