"""Quantiles of a Prometheus histogram read from a `/metrics` page.

The demo reports intent propagation latency from the manager's
`digi_mount_propagation_seconds{direction="down"|"up"}` histogram. Quantiles are
estimated like PromQL's `histogram_quantile`: linear interpolation inside the
bucket that holds the rank, the lowest bucket starting at 0, and the upper bound of
the last finite bucket when the rank falls in `+Inf`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def buckets(text: str, metric: str, labels: Mapping[str, str]) -> list[tuple[float, float]]:
    """Cumulative `(le, count)` pairs of `metric` whose labels include `labels`, summed over the rest."""
    totals: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != f"{metric}_bucket":
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            le = float(sample.labels["le"])
            totals[le] = totals.get(le, 0.0) + sample.value
    return sorted(totals.items())


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) of a cumulative histogram; None when it holds no observation."""
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return lower_le
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le
