"""What lets the leader bootstrap its own CRDs: informers of a resource no CRD
serves yet, and `on_leading` hooks that do not depend on each other.
Against the session's real API server."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

from manager.cache import CRD_GVR, crd_gvr
from manager.informer import Informer
from manager.kube import Client
from manager.runtime import Manager
from manager.types import GVR
from tests.manager_fixtures import wait_for


@pytest.fixture
def client(space: Any) -> Client:
    return Client.from_kubeconfig(space.kubeconfig)


def widget_crd(plural: str) -> dict[str, Any]:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.boot.test.digi.dev"},
        "spec": {
            "group": "boot.test.digi.dev",
            "scope": "Namespaced",
            "names": {"kind": f"W{plural}", "plural": plural, "singular": plural},
            "versions": [
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": free}}}}
            ],
        },
    }


def test_informer_of_an_unserved_resource_is_synced_empty_then_sees_the_crd_arrive(
    client: Client, namespace: str
) -> None:
    plural = f"widgets{uuid.uuid4().hex[:8]}"
    gvr = GVR("boot.test.digi.dev", "v1", plural)
    informer = Informer(client, gvr)
    added: list[str] = []
    informer.add_handler(lambda t, o, _old: added.append(o["metadata"]["name"]) if t == "ADDED" else None)
    informer.start()
    crd = widget_crd(plural)
    try:
        assert informer.wait_synced(30), "an informer of a resource nobody serves must count as synced"
        assert informer.list() == []
        client.create(CRD_GVR, None, crd)
        wait_for(lambda: crd_gvr(client.get(CRD_GVR, None, crd["metadata"]["name"])), 30, "the CRD")
        client.create(gvr, namespace, {"apiVersion": "boot.test.digi.dev/v1", "kind": f"W{plural}",
                                       "metadata": {"name": "w1", "namespace": namespace}, "spec": {}})
        wait_for(lambda: "w1" in added, 30, "the informer to list the new resource")
        client.patch(gvr, namespace, "w1", {"spec": {"v": 1}})
        wait_for(lambda: (informer.get(namespace, "w1") or {}).get("spec") == {"v": 1}, 30,
                 "the watch after the first real list")
    finally:
        informer.stop()
        client.delete(CRD_GVR, None, crd["metadata"]["name"])
        # The namespace fixture's cleanup walks discovery: let the group leave it first.
        wait_for(lambda: "boot.test.digi.dev" not in str(client.request("GET", "/apis")), 60,
                 "the test CRD's group to leave discovery")


def test_a_failing_on_leading_hook_does_not_stop_the_others(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = Manager(client)  # no leader election: it leads as soon as its cache synced
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("CRD bootstrap exploded")

    mgr.on_leading(broken)
    mgr.on_leading(lambda: ran.append("second"))
    runner = threading.Thread(target=mgr.run, daemon=True)
    with caplog.at_level(logging.ERROR, logger="manager.runtime"):
        runner.start()
        try:
            wait_for(lambda: ran == ["broken", "second"], 60, "both hooks to run")
            mgr.on_leading(broken)  # registered while leading: runs now, and does not raise here
            mgr.on_leading(lambda: ran.append("late"))
            assert ran == ["broken", "second", "broken", "late"]
        finally:
            mgr.stop()
            runner.join(30)
    assert [r for r in caplog.records if "CRD bootstrap exploded" in str(r.exc_info)]
