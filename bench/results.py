"""Figures, their statistics, targets, `bench/results.json` and the printed table.

Every benchmark hands back `Figure`s: either a distribution (samples → p50/p99)
or a single value, always with a unit and a trial count. A figure that could
not be measured is still a `Figure`, with `measured=False` and the reason, so
results.json never silently lacks a number and never holds a made-up one.
Latency figures name how many API writes they cross (`api_writes`); the
`Results` collection then computes their ratio to floor(k) measured in the
same run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q% of samples ≤ it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Target:
    """A goal from issue 9, checked against a figure (and the floor, where relevant)."""

    text: str
    check: Callable[[Figure, Results], bool]


@dataclass
class Figure:
    key: str
    title: str
    unit: str
    samples: list[float] | None = None
    value: float | None = None
    trials: int = 0
    warmup: int = 0
    api_writes: int | None = None
    targets: list[Target] = field(default_factory=list)
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.reason is None

    @property
    def p50(self) -> float | None:
        return percentile(self.samples, 50) if self.samples else None

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 99) if self.samples else None

    @property
    def headline(self) -> float | None:
        """The number a table shows first: p50 of a distribution, else the value."""
        return self.p50 if self.samples else self.value

    @classmethod
    def missing(cls, key: str, title: str, unit: str, reason: str,
                targets: list[Target] | None = None, api_writes: int | None = None) -> Figure:
        return cls(key, title, unit, reason=reason, targets=targets or [], api_writes=api_writes)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class Results:
    """All figures of one run, in the order they were measured."""

    def __init__(self, machine: dict[str, Any], quick: bool) -> None:
        self.machine = machine
        self.quick = quick
        self.figures: list[Figure] = []

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def get(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def floor(self, k: int) -> Figure | None:
        fig = self.get(f"floor.{k}")
        return fig if fig is not None and fig.measured else None

    def ratios(self, fig: Figure) -> tuple[float | None, float | None]:
        """(p50 ratio, p99 ratio) of a latency figure to floor(k) for its k API writes."""
        if fig.api_writes is None or not fig.samples:
            return None, None
        base = self.floor(fig.api_writes)
        if base is None or not base.samples:
            return None, None
        assert fig.p50 is not None and fig.p99 is not None
        assert base.p50 is not None and base.p99 is not None
        return fig.p50 / base.p50, fig.p99 / base.p99

    def target_status(self, fig: Figure) -> list[dict[str, Any]]:
        out = []
        for target in fig.targets:
            met = target.check(fig, self) if fig.measured else None
            out.append({"target": target.text, "met": met})
        return out

    def to_json(self) -> dict[str, Any]:
        figures = []
        for fig in self.figures:
            r50, r99 = self.ratios(fig)
            base = self.floor(fig.api_writes) if fig.api_writes else None
            figures.append({
                "key": fig.key,
                "title": fig.title,
                "unit": fig.unit,
                "measured": fig.measured,
                "reason": fig.reason,
                "trials": fig.trials,
                "warmup": fig.warmup,
                "p50": _round(fig.p50),
                "p99": _round(fig.p99),
                "value": _round(fig.value),
                "api_writes": fig.api_writes,
                "floor": None if base is None else {
                    "key": base.key, "p50": _round(base.p50), "p99": _round(base.p99)},
                "ratio_to_floor_p50": _round(r50),
                "ratio_to_floor_p99": _round(r99),
                "targets": self.target_status(fig),
                **({"extra": fig.extra} if fig.extra else {}),
            })
        return {"quick": self.quick, "machine": self.machine, "figures": figures}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def table(self) -> str:
        """A fixed-width table: one row per figure."""
        header = ("figure", "unit", "n", "p50/value", "p99", "floor p50", "x floor", "targets")
        rows: list[tuple[str, ...]] = [header]
        for fig in self.figures:
            if not fig.measured:
                rows.append((fig.key, fig.unit, "-", "not measured", "", "", "",
                             _short(fig.reason or "")))
                continue
            r50, _ = self.ratios(fig)
            base = self.floor(fig.api_writes) if fig.api_writes else None
            statuses = self.target_status(fig)
            met = " ".join("met" if s["met"] else "NOT met" for s in statuses)
            rows.append((
                fig.key, fig.unit, str(fig.trials), _fmt(fig.headline), _fmt(fig.p99),
                _fmt(base.p50 if base else None), _fmt(r50, "{:.2f}"), met,
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _fmt(x: float | None, spec: str = "{:.3g}") -> str:
    if x is None:
        return ""
    return spec.format(x) if abs(x) < 1e5 else f"{x:.0f}"


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
