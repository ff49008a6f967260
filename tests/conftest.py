"""Session fixtures: a private local dSpace (etcd + kube-apiserver + lake, no manager).

`space` starts one `digi.space.Space` in a pytest temp root with its own free
ports, so tests never touch `~/.digi` or a real cluster; this process's
environment is left alone (use `space.env()` for subprocesses). It is torn
down at session end, on failure, on Ctrl-C and on SIGTERM (the `atexit` hook covers an
interrupted session whose fixture finalizers did not run). `kube` is an admin
`kubernetes.client.ApiClient` for it; `namespace` a fresh namespace per test.

There is no kube-controller-manager in the space, so `namespace` does the
namespace controller's job at teardown: it deletes every namespaced object in
it and finalizes it, so later tests (and managers watching all namespaces) do
not see leftovers. Objects holding finalizers nobody removes may linger.
"""

from __future__ import annotations

import atexit
import json
import re
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from digi.space import Space


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    # `timeout N pytest` ends with SIGTERM, which would skip every teardown and
    # orphan the space; turn it into an interrupt so the finally below runs.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    sp = Space(tmp_path_factory.mktemp("dspace"))
    atexit.register(sp.down)
    try:
        sp.up(manager=False)
        yield sp
    finally:
        sp.down()
        atexit.unregister(sp.down)


@pytest.fixture(scope="session")
def kube(space: Space) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(space.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test (plus a random suffix), deleted afterwards."""
    core = client.CoreV1Api(kube)
    prefix = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    ns = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(generate_name=f"{prefix or 'test'}-"))
    )
    assert ns.metadata is not None and ns.metadata.name
    name = ns.metadata.name
    try:
        yield name
    finally:
        _purge_namespace(kube, name)


def _request(kube: client.ApiClient, method: str, path: str) -> Any:
    """A raw API request (discovery and deletecollection have no typed methods for all kinds)."""
    resp = kube.call_api(method, f"{kube.configuration.host}{path}")
    data = resp.read()
    if resp.status >= 400:
        raise ApiException(status=resp.status, reason=f"{method} {path}: {data!r}")
    return json.loads(data)


def _namespaced_collections(kube: client.ApiClient) -> Iterator[str]:
    """Paths `/api[s]/GROUP/VERSION/namespaces/{ns}/PLURAL` of resources that can be bulk-deleted."""
    group_versions = [f"/api/{v}" for v in _request(kube, "GET", "/api")["versions"]]
    group_versions += [
        f"/apis/{g['preferredVersion']['groupVersion']}" for g in _request(kube, "GET", "/apis")["groups"]
    ]
    for gv in group_versions:
        for res in _request(kube, "GET", gv)["resources"]:
            if res["namespaced"] and "/" not in res["name"] and "deletecollection" in res["verbs"]:
                yield f"{gv}/namespaces/{{ns}}/{res['name']}"


def _purge_namespace(kube: client.ApiClient, name: str) -> None:
    """Delete the namespace, everything in it, then remove its finalizer (no controller here)."""
    core = client.CoreV1Api(kube)
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status == 404:
            return
        raise
    for path in _namespaced_collections(kube):
        _request(kube, "DELETE", path.format(ns=name))
    ns = core.read_namespace(name)
    assert ns.spec is not None
    ns.spec.finalizers = []
    core.replace_namespace_finalize(name, ns)
