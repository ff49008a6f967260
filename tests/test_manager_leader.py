"""Two managers with --leader-elect against the real API server: one writes, the other waits.

Short lease flags (6 s lease, 4 s renew deadline, 0.5 s retry) keep the test
quick; the semantics are the defaults'.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from manager.cache import CRD_GVR
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


def reads(mgr: ManagerProcess) -> float:
    return sum(value for labels, value in mgr.metrics().get("rest_client_requests_total", [])
               if labels["method"] == "GET")


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
        assert writes(second) == 0, "a standby writes nothing, not even at start"

        client.create(PROBE_GVR, namespace, probe("p", namespace, driver))
        client.patch(PROBE_GVR, namespace, "p", {"spec": {"control": {"power": {"intent": "on"}}}})
        wait_for(lambda: status(client, namespace, "p") == "on", 60, "the leader's worker to converge")

        assert is_master(first) == 1 and is_master(second) == 0
        assert writes(first) > 0
        assert writes(second) == 0, "the standby wrote without the lease"
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
        assert writes(second) > 0

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


def test_a_standby_does_not_create_missing_crds_and_creates_them_once_it_leads(
    space: Any, namespace: str, tmp_path: Path
) -> None:
    """The meta controllers' CRDs are a leader's bootstrap (`on_leading`), not a setup step."""
    client = Client.from_kubeconfig(space.kubeconfig)
    names = [f"{plural}.digi.dev" for plural in ("syncs", "yieldpolicies", "pipelets")]
    for name in names:
        if client.get_or_none(CRD_GVR, None, name) is not None:
            client.delete(CRD_GVR, None, name)
    wait_for(lambda: all(client.get_or_none(CRD_GVR, None, n) is None for n in names), 60, "the CRDs to go")
    lease = f"digi-test-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.create(LEASE_GVR, namespace, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": lease, "namespace": namespace},
        # A holder that looks alive for an hour: the manager stays a standby until it is released.
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now},
    })
    mgr = ManagerProcess(space, tmp_path / "m", *flags(lease, namespace, "standby")).start()
    try:
        # ready although the CRDs its informers watch do not exist yet; a few election rounds pass
        lease_reads = reads(mgr)
        wait_for(lambda: reads(mgr) >= lease_reads + 6, 30, "the standby to keep polling")
        assert is_master(mgr) == 0
        assert writes(mgr) == 0, "the standby wrote without the lease"
        assert all(client.get_or_none(CRD_GVR, None, n) is None for n in names), "a standby created CRDs"

        current = client.get(LEASE_GVR, namespace, lease)
        current["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
        client.update(LEASE_GVR, namespace, current)
        wait_for(lambda: is_master(mgr) == 1, 30, "the manager to take the released lease")
        wait_for(lambda: all(client.get_or_none(CRD_GVR, None, n) for n in names), 30,
                 "the leader to create the missing CRDs")
        assert writes(mgr) > 0
    finally:
        mgr.stop()
