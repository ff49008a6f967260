"""Helpers for composition tests: a manager with the admission webhook, a free-form test kind, the CLI.

`CompositionSpace` runs `python -m manager` against the session's `space`
with the webhook on (cert from `digi.space.webhook`, as `digi space up`
gives it) and waits until the `ValidatingWebhookConfiguration` lists the
kinds a test needs. `Node` (`test.digi.dev/v1`) is a digi kind without a driver
and with a free-form spec, so any node may mount any other: the shipped kinds'
schemas cannot even express a loop, but a webhook must refuse one.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from controllers.admission import CONFIG_NAME, VWC_GVR
from digi.cli.main import cli
from digi.space import Space
from digi.space.pki import Pki
from digi.space.ports import free_ports
from digi.space.webhook import webhook_env
from manager.cache import CRD_GVR, crd_gvr
from manager.kube import Client
from manager.types import GVR
from tests.manager_fixtures import ManagerProcess, wait_for

NODES = GVR("test.digi.dev", "v1", "nodes")
LAMPS = GVR("mock.digi.dev", "v1", "lamps")
ROOMS = GVR("mock.digi.dev", "v1", "rooms")
BUILDINGS = GVR("mock.digi.dev", "v1", "buildings")
REPO = Path(__file__).resolve().parents[1]


def node_crd() -> dict[str, Any]:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "nodes.test.digi.dev", "labels": {"digi.dev/kind": "true"}},
        "spec": {
            "group": "test.digi.dev",
            "scope": "Namespaced",
            "names": {
                "kind": "Node",
                "plural": "nodes",
                "singular": "node",
                "listKind": "NodeList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": free}}},
                }
            ],
        },
    }


def node(name: str, namespace: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "test.digi.dev/v1",
        "kind": "Node",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {},
    }


def mounts(*children: str, status: str = "active", gvr: GVR = NODES, ns: str) -> dict[str, Any]:
    return {
        "mount": {str(gvr): {f"{ns}/{c}": {"mode": "hide", "status": status} for c in children}}
    }


class CompositionSpace:
    def __init__(self, space: Space, root: Path) -> None:
        self.space = space
        self.client = Client.from_kubeconfig(space.kubeconfig, user_agent="composition-tests")
        (self.webhook_port,) = free_ports(1)
        self.env = webhook_env(Pki(space.layout.pki), self.webhook_port)
        self.manager = ManagerProcess(space, root)

    def start(self) -> None:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            self.manager.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def stop(self) -> None:
        self.manager.stop()

    # -- kinds --------------------------------------------------------------------

    def ensure_kind(self, crd: dict[str, Any]) -> GVR:
        name = crd["metadata"]["name"]
        if self.client.get_or_none(CRD_GVR, None, name) is None:
            self.client.create(CRD_GVR, None, crd)
        return wait_for(lambda: crd_gvr(self.client.get(CRD_GVR, None, name)), 30, f"CRD {name}")

    def wait_webhook_covers(self, *gvrs: GVR) -> None:
        def covered() -> bool:
            vwc = self.client.get(VWC_GVR, None, CONFIG_NAME)
            rules = vwc["webhooks"][0].get("rules") or []
            have = {
                (g, v, r)
                for rule in rules
                for g in rule["apiGroups"]
                for v in rule["apiVersions"]
                for r in rule["resources"]
            }
            return all(tuple(gvr) in have for gvr in gvrs)

        wait_for(covered, 30, f"the webhook configuration to cover {gvrs}")

    # -- tools ----------------------------------------------------------------------

    def digi(self, *args: str) -> tuple[int, str]:
        """Run the `digi` CLI in-process; (exit code, output)."""
        result = CliRunner().invoke(cli, ["--kubeconfig", str(self.space.kubeconfig), *args])
        return result.exit_code, result.output

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.space.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apply(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def graph(self) -> dict[str, Any]:
        return httpx.get(f"{self.manager.url}/api/v1/graph", timeout=5).json()

    def get(self, gvr: GVR, namespace: str, name: str) -> dict[str, Any]:
        return self.client.get(gvr, namespace, name)


def composition_space(space: Space, root: Path) -> Iterator[CompositionSpace]:
    cs = CompositionSpace(space, root)
    cs.start()
    try:
        yield cs
    finally:
        cs.stop()
