"""The suite: which sections run, in which order, and how failures become records.

A section declares the figures it will produce (`planned`, with their targets)
and measures them (`measure`, yielding figures as they are done). Whatever a
section does not produce — because it raised, or a part of Digi it needs is
missing — is recorded as *not measured* with the reason, so results.json
always lists every figure and never invents one.

Order: floor(k) first, on a space without the manager (no controller touches
the API server); then the manager is started and the other sections run
against the same API server.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import data, floor, machine, propagation, scale, startup
from bench.context import Context
from bench.results import Figure, Results
from bench.space import BenchSpace
from bench.trials import Plan

FLOOR_KS = list(range(1, 12))  # up to 1 + 2·5 writes: the depth-5 chain's FPT


@dataclass(frozen=True)
class Section:
    name: str
    planned: Callable[[Context], list[Figure]]
    measure: Callable[[Context], Iterator[Figure]]


def _floor_planned(_ctx: Context) -> list[Figure]:
    return [Figure.missing(f"floor.{k}", f"floor({k}): {k} sequential PATCH→watch round trips",
                           "ms", "not run") for k in FLOOR_KS]


def _floor_measure(ctx: Context) -> Iterator[Figure]:
    yield from floor.measure(ctx.bs.kubeconfig, FLOOR_KS, ctx.plan)


FLOOR = Section("floor", _floor_planned, _floor_measure)
SECTIONS = (
    Section("propagation", lambda _c: propagation.planned(), propagation.measure),
    Section("startup", lambda _c: startup.planned(), startup.measure),
    Section("data", lambda _c: data.planned(), data.measure),
    # Last: the longest, and it leaves thousands of digis behind.
    Section("scale", scale.planned, scale.measure),
)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_section(section: Section, ctx: Context, skip_reason: str | None = None) -> None:
    planned = {f.key: f for f in section.planned(ctx)}
    done: set[str] = set()
    reason = skip_reason or "the section ended without producing it"
    if skip_reason is None:
        _log(f"== {section.name}")
        try:
            for fig in section.measure(ctx):
                template = planned.get(fig.key)
                if template is not None:
                    fig.targets = template.targets
                ctx.results.add(fig)
                done.add(fig.key)
                _log(f"  {fig.key}: p50/value {fig.headline} {fig.unit}, p99 {fig.p99}, "
                     f"n={fig.trials}")
        except Exception as exc:
            reason = f"{section.name} stopped: {type(exc).__name__}: {exc}".strip()
            _log(traceback.format_exc())
        except KeyboardInterrupt:
            _record_missing(planned, done, ctx, "the run was interrupted (Ctrl-C) during it")
            raise
    _record_missing(planned, done, ctx, reason)


def _record_missing(planned: dict[str, Figure], done: set[str], ctx: Context,
                    reason: str) -> None:
    for key, template in planned.items():
        if key not in done:
            template.reason = reason
            ctx.results.add(template)


def main(quick: bool, out: Path, only: set[str] | None,
         profile_dir: Path | None = None, keep: bool = False) -> Results:
    results = Results({**machine.describe(), "profiled": profile_dir is not None}, quick)
    plan = Plan.for_mode(quick)
    with BenchSpace(manager=False, keep=keep) as bs:
        _log(f"private dSpace in {bs.root}" + (" (kept)" if keep else ""))
        ctx = Context(bs=bs, plan=plan, quick=quick, results=results, profile_dir=profile_dir)
        try:
            run_section(FLOOR, ctx)
            # The API server's own watches (its loopback informers), before the manager adds its.
            time.sleep(1.0)
            ctx.watch_baseline = scale.watch_counts(ctx.kube)
            skip: str | None = None
            try:
                bs.space.up(manager=True)
            except Exception as exc:
                skip = f"the manager did not start: {exc}"
            for section in SECTIONS:
                if only is None or section.name in only:
                    try:
                        run_section(section, ctx, skip)
                    except KeyboardInterrupt:
                        skip = "the run was interrupted (Ctrl-C) before this section"
                    results.write(out)  # after each section, so a stopped run keeps its figures
        finally:
            ctx.close()
            results.write(out)
    return results
