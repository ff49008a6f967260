"""Session fixtures: a private local dSpace (etcd + kube-apiserver + lake, no manager).

`space` starts one `digi.space.Space` in a pytest temp root with its own free
ports, so tests never touch `~/.digi` or a real cluster; this process's
environment is left alone (use `space.env()` for subprocesses). It is torn
down at session end, on failure and on Ctrl-C (the `atexit` hook covers an
interrupted session whose fixture finalizers did not run). `kube` is an admin
`kubernetes.client.ApiClient` for it; `namespace` a fresh namespace per test.

There is no kube-controller-manager in the space, so a deleted namespace stays
`Terminating` with its objects; tests must use their own `namespace` rather
than assume an empty cluster.
"""

from __future__ import annotations

import atexit
import re
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from digi.space import Space


@pytest.fixture(scope="session")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
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
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
