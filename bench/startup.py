"""Startup: `digi run` → the new digi's first reconcile, p50 over 20 runs.

Each run starts the clock just before invoking `digi run bench/kinds/lamp NAME`
(the CLI's own start-up counts: it is what a user waits for) and stops it when
the lamp driver's handler starts its first cycle (the probe from the CR
template's `meta.probe_port`, so nothing is written after creation). The
digi is stopped (`digi stop`) before the next run, so each run starts one
worker into an otherwise quiet manager. A run whose first reconcile does not
come within 60 s is lost (named in `extra.lost`), not retried.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

from bench.context import Context
from bench.marks import Timeout
from bench.results import Figure, Results, Target, percentile
from bench.space import DIGI

RUNS = 20
LOST_AFTER = 60.0


def _target() -> list[Target]:
    def check(fig: Figure, _res: Results) -> bool:
        return fig.p50 is not None and fig.p50 <= 1000.0
    return [Target("p50 ≤ 1 s", check)]


def planned() -> list[Figure]:
    return [Figure.missing("startup", "startup: `digi run` invoked → first reconcile starts", "ms",
                           "not run", targets=_target())]


def measure(ctx: Context) -> Iterator[Figure]:
    kind = ctx.kind_dir("lamp")
    samples: list[float] = []
    cli: list[float] = []
    lost: list[str] = []
    for i in range(RUNS):
        name = f"st-{i}"
        t0 = time.monotonic()
        out = subprocess.run([str(DIGI), "--root", str(ctx.bs.root), "run", str(kind), name],
                             capture_output=True, text=True, env=ctx.bs.env(), check=False)
        cli.append(1e3 * (time.monotonic() - t0))
        if out.returncode != 0:
            raise RuntimeError(f"digi run {name}: exit {out.returncode}: {out.stderr.strip()}")
        try:
            start = ctx.marks.wait(("start", "lamp", name, 0), LOST_AFTER)
        except Timeout as exc:
            lost.append(name)
            print(f"  startup {name}: lost: {exc}", file=sys.stderr)
        else:
            samples.append(1e3 * (start - t0))
            print(f"  startup {name}: {samples[-1]:.0f} ms (CLI {cli[-1]:.0f} ms)",
                  file=sys.stderr)
        ctx.bs.digi("stop", name)
    if not samples:
        raise Timeout(f"no run reached its first reconcile within {LOST_AFTER} s: {lost}")
    extra: dict[str, object] = {"cli_exit_ms_p50": round(percentile(cli, 50), 1)}
    if lost:
        extra["lost"] = lost
    yield Figure("startup", planned()[0].title, "ms", samples=samples, trials=len(samples),
                 extra=extra)
