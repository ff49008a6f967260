"""The demo's closing report: the product's figures next to the CSV's, and a verdict.

`compare` pairs each `Observed` figure with the one `rules.expected` derives from the
CSV, and `render` prints them as a table (or `as_dict` as JSON). Checks (lockstep only,
see `compare`): rows, occupancy and power changes and energy must match (energy to
`ENERGY_TOLERANCE_WH`) and the agreement must be exactly 100 %; every pipeline
must have caught up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from digi.demo.dataset import Reading
from digi.demo.observe import Observed, agreement, power_changes, state_at
from digi.demo.rules import Expected

ENERGY_TOLERANCE_WH = 1e-6


@dataclass
class Line:
    label: str
    product: Any  # None: not a product figure
    csv: Any = None  # None: the CSV has no counterpart
    ok: bool | None = None  # None: informational
    digits: int = 6  # decimals a float is shown with


@dataclass
class Summary:
    title: str
    lines: list[Line]
    lagging: list[str] = field(default_factory=list)
    enforced: bool = True  # False: a paced run, whose comparison is for information

    @property
    def failures(self) -> list[str]:
        out = [f"{line.label}: product {_fmt(line.product, line.digits)} vs CSV {_fmt(line.csv, line.digits)}"
               for line in self.lines if line.ok is False]
        return out + [f"pipeline still lagging: {lag}" for lag in self.lagging]

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "lines": [asdict(line) for line in self.lines], "lagging": self.lagging,
                "checked": self.enforced, "failures": self.failures, "ok": not self.failures}


def occupancy_changes(readings: Sequence[Reading], room: Sequence[tuple[float, Any]]) -> int:
    room_at = state_at(room, False)
    states = [bool(room_at(r.event_ts)) for r in readings]
    return sum(1 for a, b in pairwise(states) if a != b)


def compare(title: str, room: str, readings: Sequence[Reading], observed: Observed,
            expected: Mapping[str, Expected], mode: str, lagging: Sequence[str]) -> Summary:
    """`expected`: per lamp, the CSV figures for that lamp's wattage.

    Only lockstep promises that every row propagates before the next, so only there
    do mismatches fail the run; a paced run shows the same comparison for information.
    """
    first = next(iter(expected.values()))
    enforce = mode == "lockstep"

    def check(ok: bool) -> bool | None:
        return ok if enforce else None

    share = agreement(readings, observed.room_occupancy, observed.lamp_series)
    changes = occupancy_changes(readings, observed.room_occupancy)
    lines = [
        Line("rows replayed", observed.rows_applied, first.rows, observed.rows_applied == first.rows),
        Line("occupancy changes (room vs data)", changes, first.occupancy_changes,
             check(changes == first.occupancy_changes)),
    ]
    for lamp, series in observed.lamp_series.items():
        n = power_changes(series)
        lines.append(Line(f"power changes in {lamp}'s pool", n, expected[lamp].lamp_power_changes,
                          check(n == expected[lamp].lamp_power_changes)))
    lines.append(Line("agreement with ground truth (%)", round(100 * share, 3), None, check(share == 1.0),
                      digits=1))
    for lamp, wh in observed.lamp_energy_wh.items():
        want = expected[lamp].lamp_energy_wh
        lines.append(Line(f"energy {lamp} (Wh)", wh, want, check(abs(wh - want) <= ENERGY_TOLERANCE_WH)))
    room_want = sum(e.lamp_energy_wh for e in expected.values())
    lines.append(Line(f"energy {room} (Wh, device_energy)", observed.room_energy_wh, room_want,
                      check(abs(observed.room_energy_wh - room_want) <= ENERGY_TOLERANCE_WH)))
    lines.append(Line("building occupancy series length",
                      f"{observed.building_occupancy_records} ({observed.building_occupancy_distinct} distinct)"))
    for direction, q in observed.latency.items():
        value = None if q is None else f"p50 {q[0] * 1000:.1f} ms, p99 {q[1] * 1000:.1f} ms"
        lines.append(Line(f"propagation latency {direction}", value or "no observations"))
    return Summary(title, lines, list(lagging), enforce)


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(summary: Summary) -> str:
    width = max(len(line.label) for line in summary.lines)
    out = [summary.title, f"  {'':{width}}  {'product':>24}  {'from the CSV':>14}"]
    for line in summary.lines:
        mark = {True: "  ok", False: "  MISMATCH", None: ""}[line.ok]
        out.append(f"  {line.label:{width}}  {_fmt(line.product, line.digits):>24}  "
                   f"{_fmt(line.csv, line.digits):>14}{mark}")
    out.extend(f"  lagging: {lag}" for lag in summary.lagging)
    if summary.failures:
        out.append("FAILED:\n  " + "\n  ".join(summary.failures))
    elif summary.enforced:
        out.append("OK: the product matches the CSV")
    else:
        out.append("paced: rows were written without waiting for the previous one to propagate, so "
                   "rows can coalesce and the figures may differ; use --mode lockstep to check them")
    return "\n".join(out)
