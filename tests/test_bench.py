"""The benchmark harness's arithmetic: percentiles, floor ratios, targets, the throughput analysis.

No timing is asserted here (benchmarks print times, tests never assert them);
these check that the numbers the harness reports are computed as bench/README.md
defines them, from hand-made samples.
"""

from __future__ import annotations

import json

from bench.propagation import slope
from bench.results import Figure, Results, Target, percentile
from bench.scale import PER_ROOM, Update, analyse, lamp_name


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 201)]  # 1..200
    assert percentile(samples, 50) == 100.0
    assert percentile(samples, 99) == 198.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def _results() -> Results:
    res = Results({"cores": 2}, quick=True)
    res.add(Figure("floor.3", "floor(3)", "ms", samples=[10.0] * 98 + [20.0] * 2, trials=100))
    return res


def test_ratio_uses_the_floor_with_the_same_number_of_writes() -> None:
    res = _results()
    fig = res.add(Figure("x", "x", "ms", samples=[15.0] * 98 + [40.0] * 2, trials=100, api_writes=3))
    assert res.ratios(fig) == (1.5, 2.0)
    other = res.add(Figure("y", "y", "ms", samples=[1.0], trials=1, api_writes=2))
    assert res.ratios(other) == (None, None)  # no floor(2) measured: no ratio, not a guess


def test_targets_met_not_met_and_unmeasured() -> None:
    res = _results()
    le = Target("p50 ≤ 12", lambda f, _r: f.p50 is not None and f.p50 <= 12)
    res.add(Figure("a", "a", "ms", samples=[11.0], trials=1, targets=[le]))
    res.add(Figure("b", "b", "ms", samples=[13.0], trials=1, targets=[le]))
    res.add(Figure.missing("c", "c", "ms", "the piper has not landed", targets=[le]))
    out = {f["key"]: f for f in json.loads(json.dumps(res.to_json()))["figures"]}
    assert out["a"]["targets"] == [{"target": "p50 ≤ 12", "met": True}]
    assert out["b"]["targets"] == [{"target": "p50 ≤ 12", "met": False}]
    assert out["c"]["targets"] == [{"target": "p50 ≤ 12", "met": None}]
    assert out["c"]["measured"] is False and out["c"]["p50"] is None
    assert out["c"]["reason"] == "the piper has not landed"
    assert "not measured" in res.table()


def test_slope() -> None:
    assert slope([(1.0, 5.0), (2.0, 7.0), (3.0, 9.0)]) == 2.0


def test_analyse_counts_supersession_and_misses() -> None:
    # Room 0 is updated to 1.0 at t=0 and to 2.0 at t=1. Lamp 0 sees 1.0 at t=0.1 and 2.0 at
    # t=1.2; lamp 1 only ever sees 2.0 (at t=1.5), which supersedes 1.0; the others see nothing.
    updates = [Update(0, 1.0, 0.0), Update(0, 2.0, 1.0)]
    log = [
        {"ev": "lamp", "digi": lamp_name(0), "v": 1.0, "start": 0.1},
        {"ev": "lamp", "digi": lamp_name(0), "v": 2.0, "start": 1.2},
        {"ev": "lamp", "digi": lamp_name(1), "v": 2.0, "start": 1.5},
    ]
    out = analyse(updates, log)
    assert sorted(round(x) for x in out.latencies) == [100, 200, 500, 1500]
    assert out.never_completed == 2 * (PER_ROOM - 2)
    assert out.superseded == 1  # lamp 1's 1.0, completed by 2.0
    assert out.rate == 4 / 1.5
