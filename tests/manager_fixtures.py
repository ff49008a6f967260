"""Helpers for manager and worker tests: a manager process, a test kind, polling.

`ManagerProcess` runs `python -m manager` against the session's `space` with
its own ports and root (so several managers can run side by side, as the
leader-election test needs), and reads its `/metrics`. `write_probe_kind`
writes a small kind whose driver is a tiny engine of its own (so the
transport is tested independently of `digi.engine`): it moves
`control.power.status` to the intent, and when `meta.target` names another
digi it tries to patch that digi through the worker API and records the HTTP
status it got in `obs.attack`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from digi.space.ports import free_ports
from manager.kube import Client
from manager.types import GVR

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
PROBE_GVR = GVR("test.digi.dev", "v1", "probes")


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "condition", interval: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # the thing may not exist yet
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class ManagerProcess:
    def __init__(self, space: Any, root: Path, *extra: str, backend: str = "local") -> None:
        self.space = space
        self.root = root
        self.metrics_port, self.health_port = free_ports(2)
        self.extra = list(extra)
        self.backend = backend
        self.log_path = root / "manager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait: bool = True) -> ManagerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "manager", "--kubeconfig", str(self.space.kubeconfig),
            "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
            "--health-probe-bind-address", f"127.0.0.1:{self.health_port}",
            "--lake-url", self.space.lake_url, "--worker-backend", self.backend, "--root", str(self.root),
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DIGI_ROOT")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"manager exited with {self.proc.returncode}:\n{self.log()}")
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        wait_for(ready, timeout, "the manager's /readyz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"manager did not stop within {timeout}s of SIGTERM:\n{self.log()[-3000:]}") from None
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Samples by sample name: [(labels, value)]."""
        text = httpx.get(self.metrics_url, timeout=5).text
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((s.labels, s.value))
        return samples


def probe_crd() -> dict[str, Any]:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "probes.test.digi.dev", "labels": {"digi.dev/kind": "true"}},
        "spec": {
            "group": "test.digi.dev", "scope": "Namespaced",
            "names": {"kind": "Probe", "plural": "probes", "singular": "probe", "listKind": "ProbeList"},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": free}}}}],
        },
    }


PROBE_DRIVER = textwrap.dedent('''
    """Probe driver: a tiny engine of its own (status follows intent; optional attack)."""
    import os

    import httpx

    import digi.worker
    from digi.errors import Conflict


    class TinyEngine:
        def __init__(self, client):
            self.client = client

        def handle(self, obj, old):
            spec = obj.get("spec") or {}
            power = (spec.get("control") or {}).get("power") or {}
            patch = {}
            if "intent" in power and power.get("status") != power["intent"]:
                patch.setdefault("control", {})["power"] = {"status": power["intent"]}
            target = (spec.get("meta") or {}).get("target")
            if target and (spec.get("obs") or {}).get("attack_target") != target:
                ns, name = target.split("/")
                r = httpx.patch(
                    f"{os.environ['DIGI_MANAGER_URL']}/api/v1/digis/{ns}/{name}",
                    params={"gvr": "/".join(os.environ[k] for k in ("GROUP", "VERSION", "PLURAL"))},
                    headers={"Authorization": f"Bearer {os.environ['DIGI_TOKEN']}"},
                    json={"patch": {"spec": {"control": {"power": {"status": "hacked"}}}}},
                    trust_env=False,
                )
                patch["obs"] = {"attack": r.status_code, "attack_target": target}
            if patch:
                try:
                    self.client.patch({"spec": patch}, resource_version=obj["metadata"]["resourceVersion"])
                except Conflict:
                    pass  # a newer event follows


    if __name__ == "__main__":
        digi.worker.serve(TinyEngine(digi.worker.client_from_env()))
''')


def write_probe_kind(directory: Path) -> Path:
    """The probe kind's driver directory (holding handler.py)."""
    driver = directory / "driver"
    driver.mkdir(parents=True, exist_ok=True)
    (driver / "handler.py").write_text(PROBE_DRIVER)
    return driver


def ensure_probe_crd(client: Client) -> None:
    from manager.cache import CRD_GVR, crd_gvr

    if client.get_or_none(CRD_GVR, None, "probes.test.digi.dev") is None:
        client.create(CRD_GVR, None, probe_crd())
    wait_for(lambda: crd_gvr(client.get(CRD_GVR, None, "probes.test.digi.dev")), 30, "the probe CRD to be established")


def probe(name: str, namespace: str, driver_dir: Path | None, intent: str = "off", **meta: Any) -> dict[str, Any]:
    annotations = {"digi.dev/driver-dir": str(driver_dir)} if driver_dir else {}
    return {
        "apiVersion": "test.digi.dev/v1", "kind": "Probe",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"control": {"power": {"intent": intent}}, "meta": meta},
    }
