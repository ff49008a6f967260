"""Warm-up then trials: the one loop every latency benchmark runs.

A trial function returns one sample per named figure (e.g. `{"fpt": .., "bpt": ..}`
in milliseconds). Warm-up trials run the same code and are thrown away: they
fill caches, open connections and let workers settle. A trial that times out
counts as lost and is recorded as such, never silently retried.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.marks import Timeout


@dataclass
class Plan:
    """How many trials a latency benchmark runs (issue 9: ≥ 200 after warm-up)."""

    trials: int
    warmup: int

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        return cls(trials=50, warmup=10) if quick else cls(trials=200, warmup=30)


@dataclass
class Samples:
    by_name: dict[str, list[float]] = field(default_factory=dict)
    lost: int = 0


def run(name: str, plan: Plan, trial: Callable[[int], dict[str, float]]) -> Samples:
    """Run `plan.warmup` discarded trials, then `plan.trials` kept ones."""
    out = Samples()
    for i in range(plan.warmup + plan.trials):
        try:
            sample = trial(i)
        except Timeout as exc:
            out.lost += 1
            print(f"  {name}: trial {i} lost: {exc}", file=sys.stderr)
            continue
        if i >= plan.warmup:
            for key, value in sample.items():
                out.by_name.setdefault(key, []).append(value)
    return out
