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
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from bench.context import LAMPS, NAMESPACE, ROOMS, Context, brightness_status
from bench.kube import JSON, Watcher
from bench.results import Figure, Results, Target
from bench.trials import run

DEPTHS = (1, 2, 3, 4, 5)
PAPER = {"lamp.fpt": 18.7, "lamp.bpt": 16.1, "room_lamp.fpt": 47.3, "room_lamp.bpt": 38.9}
READY_TIMEOUT = 120.0


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


def _latency(key: str, title: str, samples: list[float], ctx: Context, lost: int,
             api_writes: int) -> Figure:
    return Figure(key, title, "ms", samples=samples, trials=len(samples),
                  warmup=ctx.plan.warmup, api_writes=api_writes,
                  extra={"lost": lost} if lost else {})


def lamp(ctx: Context) -> list[Figure]:
    name = "bl-0"
    ctx.run_digis("lamp", [name])

    def seen(_type: str, obj: JSON) -> None:
        now = time.monotonic()
        status = brightness_status(obj)
        if status is not None:
            ctx.marks.mark(("watch", obj["metadata"]["name"], status), now)

    watcher = Watcher(ctx.bs.kubeconfig, LAMPS.collection(NAMESPACE), seen)
    try:
        def trial(_i: int, timeout: float = 30.0) -> dict[str, float]:
            v = ctx.next_value()
            t0 = ctx.set_intent(LAMPS, name, v)
            start = ctx.marks.wait(("start", "lamp", name, v), timeout)
            end = ctx.marks.wait(("end", "lamp", name, v), timeout)
            shown = ctx.marks.wait(("watch", name, v), timeout)
            return {"fpt": 1e3 * (start - t0), "bpt": 1e3 * (shown - end)}

        trial(-1, READY_TIMEOUT)
        s = run("lamp", ctx.plan, trial)
    finally:
        watcher.close()
    return [
        _latency("lamp.fpt", planned()[0].title, s.by_name.get("fpt", []), ctx, s.lost, 1),
        _latency("lamp.bpt", planned()[1].title, s.by_name.get("bpt", []), ctx, s.lost, 1),
    ]


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

    def trial(_i: int, timeout: float = 30.0) -> dict[str, float]:
        v = ctx.next_value()
        t0 = ctx.set_intent(ROOMS, top, v)
        start = ctx.marks.wait(("start", "lamp", leaf, v), timeout)
        end = ctx.marks.wait(("end", "lamp", leaf, v), timeout)
        up = ctx.marks.wait(("start", "up", top, v), timeout)
        return {"fpt": 1e3 * (start - t0), "bpt": 1e3 * (up - end)}

    trial(-1, READY_TIMEOUT)
    s = run(f"chain d={d}", ctx.plan, trial)
    titles = {f.key: f.title for f in planned()}
    return [
        _latency(chain_key(d, "fpt"), titles[chain_key(d, "fpt")], s.by_name.get("fpt", []),
                 ctx, s.lost, 1 + 2 * d),
        _latency(chain_key(d, "bpt"), titles[chain_key(d, "bpt")], s.by_name.get("bpt", []),
                 ctx, s.lost, 2 * d),
    ]


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
