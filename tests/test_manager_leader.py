"""Two managers with --leader-elect against the real API server: one writes, the other waits.

Short lease flags (6 s lease, 4 s renew deadline, 0.5 s retry) keep the test
quick; the semantics are the defaults'.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from manager.kube import Client
from manager.leader import LEASE_GVR
from tests.manager_fixtures import (
    PROBE_GVR,
    ManagerProcess,
    ensure_probe_crd,
    probe,
    wait_for,
    write_probe_kind,
)

pytestmark = pytest.mark.slow
LEASE_SECONDS = 6


def flags(lease: str, namespace: str, identity: str) -> list[str]:
    return ["--leader-elect", "--leader-election-id", lease, "--leader-election-namespace", namespace,
            "--leader-elect-lease-duration", str(LEASE_SECONDS), "--leader-elect-renew-deadline", "4",
            "--leader-elect-retry-period", "0.5", "--identity", identity]


def writes(mgr: ManagerProcess) -> float:
    """Successful writes this manager sent to the API server."""
    return sum(value for labels, value in mgr.metrics().get("rest_client_requests_total", [])
               if labels["method"] in ("POST", "PUT", "PATCH", "DELETE") and labels["code"].startswith("2"))


def is_master(mgr: ManagerProcess) -> float:
    return sum(v for _, v in mgr.metrics().get("leader_election_master_status", []))


def holder(client: Client, namespace: str, lease: str) -> Any:
    return (client.get_or_none(LEASE_GVR, namespace, lease) or {}).get("spec", {}).get("holderIdentity")


def status(client: Client, namespace: str, name: str) -> Any:
    return client.get(PROBE_GVR, namespace, name)["spec"]["control"]["power"].get("status")


def test_exactly_one_manager_writes_and_stopping_it_hands_over(
    space: Any, namespace: str, tmp_path: Path
) -> None:
    client = Client.from_kubeconfig(space.kubeconfig)
    ensure_probe_crd(client)
    driver = write_probe_kind(tmp_path / "kind")
    lease = f"digi-test-{uuid.uuid4().hex[:8]}"
    first = ManagerProcess(space, tmp_path / "a", *flags(lease, namespace, "manager-a")).start()
    second = None
    try:
        wait_for(lambda: holder(client, namespace, lease) == "manager-a", 30, "manager-a to take the lease")
        second = ManagerProcess(space, tmp_path / "b", *flags(lease, namespace, "manager-b")).start()
        # Meta controllers create their own CRDs at setup when missing (a one-time bootstrap);
        # what must not happen is a standby writing while the other manager leads.
        standby_writes = writes(second)

        client.create(PROBE_GVR, namespace, probe("p", namespace, driver))
        client.patch(PROBE_GVR, namespace, "p", {"spec": {"control": {"power": {"intent": "on"}}}})
        wait_for(lambda: status(client, namespace, "p") == "on", 60, "the leader's worker to converge")

        assert is_master(first) == 1 and is_master(second) == 0
        assert writes(first) > 0
        assert writes(second) == standby_writes, "the standby wrote without the lease"
        assert not (second.root / "workers").exists(), "the standby started workers"
        assert holder(client, namespace, lease) == "manager-a"

        stopped_at = time.time()
        assert first.stop() == 0
        wait_for(lambda: holder(client, namespace, lease) == "manager-b", 3 * LEASE_SECONDS, "manager-b to take over")
        acquired = client.get(LEASE_GVR, namespace, lease)["spec"]["acquireTime"]
        handover = datetime.fromisoformat(acquired.replace("Z", "+00:00")).timestamp() - stopped_at
        assert handover < LEASE_SECONDS, f"handover took {handover:.1f}s, more than the {LEASE_SECONDS}s lease"
        assert "released lease" in first.log()

        wait_for(lambda: is_master(second) == 1, 10, "manager-b to report itself master")
        client.patch(PROBE_GVR, namespace, "p", {"spec": {"control": {"power": {"intent": "off"}}}})
        wait_for(lambda: status(client, namespace, "p") == "off", 60, "the new leader's worker to converge")
        assert writes(second) > standby_writes

        # A leader that dies without releasing: the standby waits out the lease, then leads.
        first = ManagerProcess(space, tmp_path / "a2", *flags(lease, namespace, "manager-a")).start()
        renewed = client.get(LEASE_GVR, namespace, lease)["spec"]["renewTime"]
        second.kill()
        wait_for(lambda: holder(client, namespace, lease) == "manager-a", 4 * LEASE_SECONDS, "manager-a to take over")
        taken = client.get(LEASE_GVR, namespace, lease)["spec"]
        waited = (datetime.fromisoformat(taken["acquireTime"].replace("Z", "+00:00"))
                  - datetime.fromisoformat(renewed.replace("Z", "+00:00"))).total_seconds()
        assert waited >= LEASE_SECONDS - 1, f"took a live-looking lease after {waited:.1f}s"
        client.patch(PROBE_GVR, namespace, "p", {"spec": {"control": {"power": {"intent": "on"}}}})
        wait_for(lambda: status(client, namespace, "p") == "on", 60, "the worker of the third leadership to converge")
    finally:
        for mgr in (first, second):
            if mgr is not None and mgr.proc is not None and mgr.proc.poll() is None:
                mgr.stop()
