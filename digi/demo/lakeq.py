"""The Zed queries behind the demo's summary, built from pool names and a data-time window.

Energy follows the rule in digis/README.md: change records `{watt, event_ts}` inside
the window [t_first, t_last], newest first; a running `collect(event_ts)` gives each
record the time of the next one (the window's end for the newest), so
Σ watt·(next - event_ts) needs no window function. Ties on `event_ts` are broken by
load time `ts`, so the later of two records at the same data time is the one that
holds. Pool names always go through `digi.lake.zed.pool_ref`.
"""

from __future__ import annotations

from digi.lake.zed import pool_ref, quote

Window = tuple[float, float]


def _in(window: Window) -> str:
    start, end = window
    return f"event_ts >= {float(start)!r} and event_ts <= {float(end)!r}"


def _energy_of_sorted(end: float) -> str:
    return (
        f"put _nx:=collect(event_ts) "
        f"| put _next:=(len(_nx) > 1 ? _nx[len(_nx)-2] : {float(end)!r}) "
        f"| summarize ws:=sum(watt*(_next-event_ts))"
    )


def energy(pool: str, window: Window) -> str:
    """One row `{wh}`: the energy of the watt records in `pool` over `window`."""
    return (
        f"from {pool_ref(pool)} | has(watt) and {_in(window)} | sort -r event_ts, ts "
        f"| {_energy_of_sorted(window[1])} | yield {{wh: ws/3600.0}}"
    )


def energy_by(pool: str, window: Window, field: str) -> str:
    """One row `{key, wh}` per value of `field` (a record's source) among the watt records."""
    key = f"this[{quote(field)}]"
    return (
        f"from {pool_ref(pool)} | has(watt) and {_in(window)} "
        f"| summarize recs:=collect(this) by _key:={key} "
        f"| over recs with _k=_key => (sort -r event_ts, ts | {_energy_of_sorted(window[1])} "
        f"| yield {{key: _k, wh: ws/3600.0}})"
    )


def series(pool: str, field: str) -> str:
    """`{event_ts, value}` of `pool`'s records that have `field` and a data time, in data-time order.

    A data time is a numeric `event_ts` (epoch seconds from the data set); records
    stamped by `digi.pool.load` without one carry a Zed `time` and are left out.
    """
    f = f"this[{quote(field)}]"
    numeric = "(typeof(event_ts)==<int64> or typeof(event_ts)==<float64>)"
    return f"from {pool_ref(pool)} | has({f}) and {numeric} | sort event_ts, ts | yield {{event_ts, value: {f}}}"


def count(pool: str) -> str:
    """One row `{n}`: how many records `pool`'s main branch holds."""
    return f"from {pool_ref(pool)} | summarize n:=count()"
