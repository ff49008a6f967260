"""`digi space up` runs the manager with the composition admission webhook (§5.3).

A real dSpace in its own temp root (not the shared session `space`), started
from a space.json of an older version that has no webhook port: `up` must
allocate it, the manager must register the ValidatingWebhookConfiguration
calling that port, a loop written with kubectl must be refused with its path,
and once the manager is stopped (failurePolicy Ignore) writes must go through.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controllers.admission import CONFIG_NAME, VWC_GVR
from digi.space import Space
from digi.space.process import ProcessRef, stop
from manager.cache import CRD_GVR
from manager.kube import Client
from tests.composition_fixtures import NODES, mounts, node, node_crd
from tests.manager_fixtures import wait_for
from tests.test_space import processes_of

pytestmark = pytest.mark.slow


@pytest.fixture
def space_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "space"
    try:
        yield root
    finally:
        Space(root).down()
        assert processes_of(root) == [], "the test left processes of its space running"


def kubectl_apply(space: Space, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(space.kubeconfig), "apply", "-f", "-"],
        input=json.dumps(obj), capture_output=True, text=True, timeout=60,
    )


def webhook_rules_cover(client: Client, group: str, plural: str) -> bool:
    vwc = client.get_or_none(VWC_GVR, None, CONFIG_NAME)
    rules = (vwc or {}).get("webhooks", [{}])[0].get("rules") or []
    return any(group in r["apiGroups"] and plural in r["resources"] for r in rules)


def test_up_serves_and_registers_the_webhook_and_a_stopped_manager_blocks_nothing(
    space_root: Path,
) -> None:
    space = Space(space_root)
    ports = space.init()
    # space.json as an older version wrote it: the manager had no webhook port.
    state_file = space_root / "space.json"
    state = json.loads(state_file.read_text())
    del state["ports"]["manager"]["webhook"]
    state_file.write_text(json.dumps(state))

    space.up()
    webhook_port = json.loads(state_file.read_text())["ports"]["manager"]["webhook"]
    others = {
        n for name, named in ports.items() for p, n in named.items() if (name, p) != ("manager", "webhook")
    }
    assert webhook_port not in others, "the webhook port must not reuse another component's"
    manager = space.status()["components"]["manager"]
    assert manager["healthy"]
    assert manager["webhook"] == f"https://127.0.0.1:{webhook_port}/validate"

    client = Client.from_kubeconfig(space.kubeconfig, user_agent="space-webhook-test")
    vwc = wait_for(lambda: client.get_or_none(VWC_GVR, None, CONFIG_NAME), 60, "the webhook registration")
    hook = vwc["webhooks"][0]
    assert hook["clientConfig"]["url"] == manager["webhook"]
    assert hook["failurePolicy"] == "Ignore"

    client.create(CRD_GVR, None, node_crd())
    wait_for(lambda: webhook_rules_cover(client, NODES.group, NODES.plural), 60, "the rules to cover nodes")
    ns = "default"
    client.create(NODES, ns, node("a", ns))
    client.create(NODES, ns, node("b", ns, mounts("a", ns=ns)))
    refused = kubectl_apply(space, node("a", ns, mounts("b", ns=ns)))
    assert refused.returncode != 0
    assert "would close a loop" in refused.stderr and "a → b → a" in refused.stderr, refused.stderr
    assert "mount" not in (client.get(NODES, ns, "a").get("spec") or {})

    ref = ProcessRef.from_json(json.loads(state_file.read_text())["processes"]["manager"])
    assert stop(ref, 30.0)
    assert not ref.alive()
    assert client.get_or_none(VWC_GVR, None, CONFIG_NAME) is not None, "the registration outlives the manager"
    written = kubectl_apply(space, node("c", ns, {"meta": {"v": 1}}))
    assert written.returncode == 0, written.stderr
    assert client.get(NODES, ns, "c")["spec"] == {"meta": {"v": 1}}
