"""The chart ships Digi's own CRDs in charts/digi/crds/ (Helm installs them before
the templates); they are copies of crds/, kept identical by `make chart-crds`.

A copy rather than a symlink: `helm package` and chart repositories need real
files. This test fails when one side changed without the other.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_chart_crds_match_the_repository_crds() -> None:
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (ROOT / "charts" / "digi" / "crds").glob("*.yaml")}
    assert source, "crds/ holds no CRDs"
    assert sorted(chart) == sorted(source), "run 'make chart-crds' to copy crds/ into the chart"
    for name, content in source.items():
        assert chart[name] == content, f"charts/digi/crds/{name} differs from crds/{name}: run 'make chart-crds'"
