"""The components of a local dSpace, in start order: etcd, kube-apiserver, lake, manager.

Each `ComponentSpec` names the ports it needs and builds its `Component` from the
root layout, the credentials and the ports of every component (the API server
needs etcd's, the manager needs the lake's). Adding a component is adding a spec;
adding a port to a spec is enough too: `Space.up` allocates ports that an older
space.json lacks.

The manager serves the composition admission webhook (controllers/admission.py)
on its `webhook` port with a serving cert from the dSpace CA
(`digi.space.webhook`), and registers it with the API server itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from digi.space.component import Component, HttpProbe
from digi.space.layout import Layout
from digi.space.pki import Pki
from digi.space.ports import HOST
from digi.space.webhook import webhook_settings

Ports = dict[str, dict[str, int]]
"""Ports of every component: {component: {port name: number}}."""

SERVICE_CIDR = "10.0.0.0/24"


def _etcd(layout: Layout, pki: Pki, ports: Ports) -> Component:
    client = f"http://{HOST}:{ports['etcd']['client']}"
    peer = f"http://{HOST}:{ports['etcd']['peer']}"
    return Component(
        name="etcd",
        tool="etcd",
        args=[
            "--name=digi",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=digi={peer}",
            "--initial-cluster-state=new",
        ],
        url=client,
        probe=HttpProbe(f"{client}/health"),
        log=layout.log("etcd"),
        ports=ports["etcd"],
        hint="if its data is damaged, 'digi space up --fresh' starts over with an empty store",
    )


def _apiserver(layout: Layout, pki: Pki, ports: Ports) -> Component:
    port = ports["kube-apiserver"]["secure"]
    url = f"https://{HOST}:{port}"
    return Component(
        name="kube-apiserver",
        tool="kube-apiserver",
        # Close to controller-runtime's envtest: no kubelets, no controller-manager.
        args=[
            f"--etcd-servers=http://{HOST}:{ports['etcd']['client']}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={port}",
            f"--cert-dir={layout.pki}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-issuer={url}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Without a controller-manager no ServiceAccount gets its "default" account,
            # so this plugin would refuse every pod; nothing else needs it here.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
        ],
        url=url,
        probe=HttpProbe(f"{url}/readyz", ca=pki.ca_cert, cert=(pki.admin_cert, pki.admin_key)),
        log=layout.log("kube-apiserver"),
        ports=ports["kube-apiserver"],
        # Its first start creates the built-in RBAC roles, which is slow on a busy machine.
        ready_timeout=180.0,
        hint="it needs etcd; check etcd's log too",
    )


def _lake(layout: Layout, pki: Pki, ports: Ports) -> Component:
    url = f"http://{HOST}:{ports['lake']['http']}"
    return Component(
        name="lake",
        tool="zed",
        args=["serve", "-l", f"{HOST}:{ports['lake']['http']}", "-lake", str(layout.lake_data)],
        url=url,
        probe=HttpProbe(f"{url}/version"),
        log=layout.log("lake"),
        ports=ports["lake"],
        hint=f"the lake's data is in {layout.lake_data}",
    )


def _manager(layout: Layout, pki: Pki, ports: Ports) -> Component:
    metrics = f"{HOST}:{ports['manager']['metrics']}"
    health = f"{HOST}:{ports['manager']['health']}"
    webhook = ports["manager"]["webhook"]
    return Component(
        name="manager",
        args=[
            sys.executable, "-m", "manager",
            "--kubeconfig", str(layout.kubeconfig),
            "--metrics-bind-address", metrics,
            "--health-probe-bind-address", health,
            "--lake-url", f"http://{HOST}:{ports['lake']['http']}",
            "--worker-backend", "local",
            "--root", str(layout.root),
        ],
        url=f"http://{health}",
        probe=HttpProbe(f"http://{health}/readyz"),
        log=layout.log("manager"),
        ports=ports["manager"],
        env=webhook_settings(pki, webhook, HOST),
        links={"metrics": f"http://{metrics}/metrics", "webhook": f"https://{HOST}:{webhook}/validate"},
        stop_timeout=30.0,
        hint="'digi space up --no-manager' starts the space without it",
    )


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    port_names: tuple[str, ...]
    build: Callable[[Layout, Pki, Ports], Component]


SPECS: tuple[ComponentSpec, ...] = (
    ComponentSpec("etcd", ("client", "peer"), _etcd),
    ComponentSpec("kube-apiserver", ("secure",), _apiserver),
    ComponentSpec("lake", ("http",), _lake),
    ComponentSpec("manager", ("metrics", "health", "webhook"), _manager),
)
