"""1,000 lamps in one shared worker: they all converge, and what the process costs.

The benchmark's lamp kind (`bench/kinds/lamp`, its real driver) with
`digi.dev/worker-mode: shared` on its CRD; 1,000 lamps in one namespace are
hosted by one process. The test asserts convergence (every lamp's status
follows its intent, all reconciled by that one process) and *reports* the
worker's RSS and CPU seconds (psutil) as test properties and on stdout
(`pytest -s`); it asserts no figure, since the numbers depend on the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from digi.kinds import load_kind
from manager.cache import CRD_GVR, crd_gvr
from manager.kube import Client
from manager.types import GVR
from manager.workers.base import pool_id
from manager.workers.local import worker_files
from tests.manager_fixtures import REPO, ManagerProcess, wait_for

pytestmark = pytest.mark.slow

LAMP_DIR = REPO / "bench" / "kinds" / "lamp"
N = 1000


@pytest.fixture(scope="module")
def lamp(space: Any) -> GVR:
    client = Client.from_kubeconfig(space.kubeconfig)
    kind = load_kind(LAMP_DIR)
    crd = kind.crd()
    crd["metadata"]["annotations"] = {"digi.dev/worker-mode": "shared"}
    if client.get_or_none(CRD_GVR, None, kind.crd_name) is None:
        client.create(CRD_GVR, None, crd)
    else:
        client.patch(CRD_GVR, None, kind.crd_name, {"metadata": {"annotations": crd["metadata"]["annotations"]}})
    wait_for(lambda: crd_gvr(client.get(CRD_GVR, None, kind.crd_name)), 30, "the lamp CRD to be established")
    return GVR(kind.group, kind.version, kind.plural)


@pytest.fixture(scope="module")
def manager(space: Any, lamp: GVR, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("shared-scale")).start()
    try:
        yield mgr
    finally:
        assert mgr.stop() == 0, mgr.log()[-3000:]


def lamp_obj(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "bench.digi.dev/v1", "kind": "Lamp",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"digi.dev/driver-dir": str(LAMP_DIR / "driver")}},
        "spec": {"control": {"power": {"intent": "on"}, "brightness": {"intent": 0.5}},
                 "meta": {"probe_port": 0, "probe_id": name}},
    }


def test_a_thousand_lamps_in_one_shared_worker(
    manager: ManagerProcess, lamp: GVR, namespace: str, record_property: Any
) -> None:
    client = Client.from_kubeconfig(manager.space.kubeconfig)
    state_file = worker_files(manager.root, namespace, lamp.plural, pool_id(str(LAMP_DIR / "driver")))[1]
    for i in range(N):
        client.create(lamp, namespace, lamp_obj(f"l{i:04d}", namespace))

    def converged() -> int:
        items, _ = client.list_all(lamp, namespace)
        done = sum(1 for o in items if o["spec"]["control"]["power"].get("status") == "on")
        return done == N and done

    wait_for(converged, 600, f"all {N} lamps to follow their intent", interval=2)
    pool: dict[str, Any] = json.loads(Path(state_file).read_text())
    assert pool["state"] == "running" and pool["members"] == N and pool["restarts"] == 0
    proc = psutil.Process(pool["pid"])
    rss_mib = proc.memory_info().rss / 2**20
    cpu = proc.cpu_times()
    threads = proc.num_threads()
    record_property("shared_worker_rss_mib", round(rss_mib, 1))
    record_property("shared_worker_cpu_seconds", round(cpu.user + cpu.system, 2))
    print(f"\nshared worker hosting {N} lamps: RSS {rss_mib:.1f} MiB, CPU {cpu.user + cpu.system:.1f} s "
          f"to converge, {threads} threads")
