"""The kubernetes worker backend: the objects it creates (no kubelet here, so no pods run)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digi.cli.main import cli
from manager.events import EVENT_GVR
from manager.kube import Client
from manager.server.tokens import TokenIssuer
from manager.types import ObjectKey
from manager.workers.kubernetes import DEPLOYMENT_GVR, SECRET_GVR, object_name
from tests.manager_fixtures import PROBE_GVR, ManagerProcess, ensure_probe_crd, probe, wait_for

pytestmark = pytest.mark.slow
IMAGE = "registry.example/probe-driver:1"


@pytest.fixture(scope="module")
def manager(space: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    ensure_probe_crd(Client.from_kubeconfig(space.kubeconfig))
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("k8s-manager"), "--worker-image", IMAGE,
                         "--manager-url", "http://digi-manager.digi-system:8081", backend="kubernetes").start()
    try:
        yield mgr
    finally:
        assert mgr.stop() == 0, mgr.log()[-3000:]


def test_a_digi_gets_a_deployment_owned_by_it(manager: ManagerProcess, namespace: str, tmp_path: Path) -> None:
    client = Client.from_kubeconfig(manager.space.kubeconfig)
    digi = client.create(PROBE_GVR, namespace, probe("d1", namespace, None))
    deployment = wait_for(lambda: client.get(DEPLOYMENT_GVR, namespace, "probe-d1"), 30, "the Deployment")

    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Probe", "d1", digi["metadata"]["uid"], True)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False, "workers must hold no Kubernetes credentials"
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GROUP"] == "test.digi.dev" and env["VERSION"] == "v1" and env["PLURAL"] == "probes"
    assert env["NAME"] == "d1" and env["NAMESPACE"] == namespace and env["KIND"] == "Probe"
    assert env["DIGI_MANAGER_URL"] == "http://digi-manager.digi-system:8081"
    token_ref = next(e for e in container["env"] if e["name"] == "DIGI_TOKEN")["valueFrom"]["secretKeyRef"]
    secret = client.get(SECRET_GVR, namespace, token_ref["name"])
    token = base64.b64decode(secret["data"][token_ref["key"]]).decode()
    issuer = TokenIssuer.from_file(manager.root / "manager" / "worker-token.secret")
    assert issuer.verify(token, ObjectKey(PROBE_GVR, namespace, "d1"))
    assert not issuer.verify(token, ObjectKey(PROBE_GVR, namespace, "other"))
    assert secret["metadata"]["ownerReferences"][0]["uid"] == digi["metadata"]["uid"]
    events, _ = client.list_all(EVENT_GVR, namespace)
    assert any(e["reason"] == "WorkerDeployed" and e["involvedObject"]["name"] == "d1" for e in events)

    client.delete(PROBE_GVR, namespace, "d1")
    wait_for(lambda: client.get_or_none(DEPLOYMENT_GVR, namespace, "probe-d1") is None, 30,
             "the Deployment to go with its digi")


def test_the_digi_annotation_picks_the_image(manager: ManagerProcess, namespace: str) -> None:
    client = Client.from_kubeconfig(manager.space.kubeconfig)
    obj = probe("d2", namespace, None)
    obj["metadata"]["annotations"]["digi.dev/image"] = "registry.example/special:2"
    client.create(PROBE_GVR, namespace, obj)
    deployment = wait_for(lambda: client.get(DEPLOYMENT_GVR, namespace, "probe-d2"), 30, "the Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/special:2"
    listing = CliRunner().invoke(cli, ["--root", str(manager.root), "--kubeconfig", str(manager.space.kubeconfig),
                                       "list", "-n", namespace, "-o", "json"])
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.output)
    assert (row["kind"], row["name"], row["worker"]) == ("Probe", "d2", "deployed"), "state from the digi's Events"


def test_object_names_are_dns_labels_and_do_not_collide() -> None:
    assert object_name("Probe", "d1") == "probe-d1", "a name that fits is kept as it is"
    prefix = "n" * 70
    long_a, long_b = object_name("Lamp", prefix + "-a"), object_name("Lamp", prefix + "-b")
    assert long_a != long_b and len(long_a) == len(long_b) == 63
    assert long_a.startswith("lamp-nnn") and long_a == object_name("Lamp", prefix + "-a"), "stable"
    dotted, dashed = object_name("Lamp", "a.b"), object_name("Lamp", "a-b")
    assert dashed == "lamp-a-b" and dotted != dashed and dotted.startswith("lamp-a-b-")
    for name in (long_a, dotted, object_name("Lamp", "x" * 57 + ".y")):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name


def test_digis_whose_names_share_63_characters_get_their_own_deployments(
    manager: ManagerProcess, namespace: str
) -> None:
    client = Client.from_kubeconfig(manager.space.kubeconfig)
    names = ["d" * 70 + "-1", "d" * 70 + "-2"]
    for name in names:
        client.create(PROBE_GVR, namespace, probe(name, namespace, None))
    for name in names:
        deployment = wait_for(partial(client.get, DEPLOYMENT_GVR, namespace, object_name("Probe", name)), 30,
                              f"the Deployment of {name}")
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["NAME"] == name and deployment["metadata"]["ownerReferences"][0]["name"] == name
