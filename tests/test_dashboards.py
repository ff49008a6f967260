"""The Grafana dashboards in charts/digi/dashboards/: every panel reads through
the datasource variable, every query is valid PromQL, and every query returns
series from a REAL Prometheus scraping a REAL manager while a small scenario runs.

Grafana's variables are substituted as Grafana would with "All" selected
(`allValue`, `.*`) and `$__rate_interval` set to a window that holds many of the
test's 1 s scrapes. PromQL validity is checked by `promtool check rules`, the
series by `promtool query instant` against the Prometheus the test starts
(Debian's `prometheus` package, installed by `make system-deps`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from digi.space import Space
from digi.space.ports import free_ports
from tests.chart_helpers import CHART

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
RATE_WINDOW = "30s"
# Grafana's built-in interval variables, as Grafana would expand them for a 1 s scrape.
BUILTINS = {"__rate_interval": RATE_WINDOW, "__interval": "1s", "__range": "5m"}
REPO = Path(__file__).resolve().parents[1]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels") or []  # collapsed rows nest theirs


def substitutions(dashboard: dict[str, Any]) -> dict[str, str]:
    values = dict(BUILTINS)
    for var in dashboard["templating"]["list"]:
        if var["type"] != "datasource":
            values[var["name"]] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        assert name in values, f"query uses ${name}, which the dashboard does not define: {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", one, expr)


def queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title + refId, substituted expression) of every target."""
    out = []
    for path in DASHBOARDS:
        dashboard = load(path)
        values = substitutions(dashboard)
        for panel in panels(dashboard):
            for target in panel.get("targets") or []:
                out.append((path.name, f"{panel['title']} [{target['refId']}]",
                            substitute(target["expr"], values)))
    return out


def test_dashboards_exist_and_have_unique_ids() -> None:
    assert DASHBOARDS, "no dashboards in charts/digi/dashboards"
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        ids = [p["id"] for p in panels(load(path))]
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate panel ids"


def test_every_panel_reads_through_the_datasource_variable() -> None:
    for path in DASHBOARDS:
        dashboard = load(path)
        (ds,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert ds["query"] == "prometheus"
        ref = {"type": "prometheus", "uid": f"${{{ds['name']}}}"}
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"] == ref, (path.name, var["name"])
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == ref, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == ref, (path.name, panel["title"])


def test_dashboards_cover_what_operators_watch() -> None:
    """The views the chart promises (README): each needs a panel reading these series."""
    exprs = " ".join(expr for _, _, expr in queries())
    wanted = {
        "reconcile rate": "controller_runtime_reconcile_total",
        "reconcile errors": "controller_runtime_reconcile_errors_total",
        "reconcile latency": "controller_runtime_reconcile_time_seconds_bucket",
        "work-queue depth": "workqueue_depth",
        "work-queue latency": "workqueue_queue_duration_seconds_bucket",
        "digis by kind": "sum by (kind) (digi_digis",
        "workers by state": "sum by (state) (digi_workers",
        "mount propagation p50": "histogram_quantile(0.5, sum by (direction, le) (rate(digi_mount_propagation_seconds_bucket",
        "mount propagation p99": "histogram_quantile(0.99, sum by (direction, le) (rate(digi_mount_propagation_seconds_bucket",
        "pipeline records": "digi_pipelet_records_total",
        "pipeline lag": "digi_pipelet_lag_seconds",
        "pipeline errors": "digi_pipelet_errors_total",
        "leader status": "leader_election_master_status",
    }
    missing = [view for view, needle in wanted.items() if needle not in exprs]
    assert not missing, f"no panel for: {missing}"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: run 'make system-deps' (Debian's prometheus package)")
    return found


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries())
    ]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules['groups'][0]['rules'])} rules found" in result.stdout


# -- with a real Prometheus and a real manager ---------------------------------------


class Prometheus:
    """Debian's prometheus, scraping `targets` every second, data in a temp dir."""

    def __init__(self, root: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus is not installed: run 'make system-deps' (Debian's prometheus package)")
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "digi-manager", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}],
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = root / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def target_health(self) -> list[str]:
        active = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return [t["health"] for t in active]

    def series(self, expr: str) -> list[str]:
        """The series `promtool query instant` returns (one line each)."""
        result = subprocess.run([_promtool(), "query", "instant", self.url, expr],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{expr}: {result.stderr}"
        return [line for line in result.stdout.splitlines() if "=>" in line]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _digi(space: Space, *args: str) -> str:
    result = subprocess.run([str(Path(sys.executable).parent / "digi"), "--kubeconfig", str(space.kubeconfig), *args],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, f"digi {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def _scenario(space: Space, namespace: str) -> None:
    """Two lamps mounted under a room; the room's brightness intent flows down, the
    lamps' status up, and the room's `kind:any@energy` ingress makes a pipeline."""
    from kubernetes import client, config

    _digi(space, "run", "digis/lamp", "l1", "l2", "-n", namespace)
    _digi(space, "run", "digis/room", "r1", "-n", namespace)
    api = config.new_client_from_config(config_file=str(space.kubeconfig))
    try:
        custom = client.CustomObjectsApi(api)
        mounts = {f"{namespace}/{lamp}": {"mode": "hide", "status": "active"} for lamp in ("l1", "l2")}
        custom.patch_namespaced_custom_object(
            "mock.digi.dev", "v1", namespace, "rooms", "r1",
            {"spec": {"mount": {"mock.digi.dev/v1/lamps": mounts},
                      "control": {"power": {"intent": "on"}, "brightness": {"intent": 0.8}}}},
        )
    finally:
        api.close()


@pytest.mark.slow
def test_every_panel_returns_series_from_a_real_prometheus(
    space: Space, namespace: str, tmp_path: Path,
) -> None:
    _promtool()
    from tests.manager_fixtures import ManagerProcess

    manager = ManagerProcess(space, tmp_path / "manager", "--leader-elect",
                             "--leader-election-namespace", namespace).start()
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{manager.metrics_port}"])
    try:
        prometheus.wait_ready()
        _scenario(space, namespace)
        # Families are declared when their module loads, so this set is final once the
        # manager is up: a panel reading a family it does not export is a broken panel.
        exported = set(re.findall(r"^# TYPE (\w+) ", httpx.get(manager.metrics_url, timeout=5).text, re.M))
        unexported = [q for q in queries() if not any(
            re.search(rf"\b{family}(_total|_bucket|_count|_sum)?\b", q[2]) for family in exported)]
        assert not unexported, "panels reading metrics the manager does not export:\n" + "\n".join(
            f"  {file}: {title}: {expr}" for file, title, expr in unexported)
        # Series appear as the scenario progresses; poll until every panel has one.
        missing = list(queries())
        deadline = time.monotonic() + 120
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            missing = [q for q in missing if not prometheus.series(q[2])]
        assert prometheus.target_health() == ["up"]
        assert not missing, "panels without series:\n" + "\n".join(
            f"  {file}: {title}: {expr}" for file, title, expr in missing
        ) + f"\nmanager log tail:\n{manager.log()[-2000:]}"
    finally:
        prometheus.stop()
        manager.stop()
