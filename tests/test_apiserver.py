"""The private API server of the `space` fixture is a real one: CRDs, custom resources, watches.

The CRD goes in with `kubectl` (the tool users have), the rest with the
`kubernetes` Python client (what the manager uses).
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client, watch

from digi.space import Space
from digi.space.pki import Pki, issue_cert

GROUP, VERSION, PLURAL = "apiserver.test.digi.dev", "v1", "gadgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


def kubectl(space: Space, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(space.kubeconfig), *args],
        capture_output=True, text=True, env=space.env(), timeout=60,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def crd(space: Space, tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = tmp_path_factory.mktemp("crd") / "gadget.yaml"
    path.write_text(yaml.safe_dump(CRD))
    kubectl(space, "apply", "-f", str(path))
    kubectl(space, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")


@pytest.mark.slow
def test_readyz_through_kubectl(space: Space) -> None:
    assert kubectl(space, "get", "--raw", "/readyz") == "ok"


@pytest.mark.slow
@pytest.mark.usefixtures("crd")
def test_custom_resource_roundtrip_and_watch(kube: client.ApiClient, namespace: str) -> None:
    api = client.CustomObjectsApi(kube)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"power": "off", "nested": {"level": 3}},
    }
    created = cast(
        dict[str, Any], api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    )
    read = cast(
        dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "g1")
    )
    assert read["spec"] == body["spec"]
    assert read["metadata"]["uid"] == created["metadata"]["uid"]

    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "g1", {"spec": {"power": "on"}}
    )
    # Watching from the creation's resourceVersion replays the change deterministically.
    watcher = watch.Watch()
    stream = watcher.stream(
        api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
        resource_version=created["metadata"]["resourceVersion"], timeout_seconds=30,
    )
    event = next(stream)
    watcher.stop()
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"]["name"] == "g1"
    assert event["object"]["spec"] == {"power": "on", "nested": {"level": 3}}


@pytest.mark.slow
def test_rbac_is_on_and_only_the_admin_is_allowed(space: Space, tmp_path: Path) -> None:
    # A client cert from the space's own CA authenticates, but RBAC grants a
    # stranger nothing; the admin (system:masters) may list namespaces.
    pki = Pki(space.root / "pki")
    cert, key = tmp_path / "nobody.crt", tmp_path / "nobody.key"
    issue_cert(pki, cert, key, common_name="nobody", client=True)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    stranger = httpx.get(f"{space.apiserver_url}/api/v1/namespaces", verify=ctx)
    assert stranger.status_code == 403
    assert 'User "nobody" cannot list' in stranger.json()["message"]

    assert "default" in kubectl(space, "get", "namespaces", "-o", "name")
