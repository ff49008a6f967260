"""`helm install`, `upgrade` and `uninstall` of the chart into the space's real
API server, the objects it creates, and the manager's RBAC (`kubectl auth can-i`).

No pods run here: the space is an API server without a scheduler, kubelet or
controller-manager, so the Deployment and StatefulSet are stored but never get
pods (and the lake's PVC is never created). The test asserts exactly that rather
than waiting for readiness. The webhook is limited to the test's namespace
(`webhook.namespaceSelector`) so it cannot slow other tests' digi writes in the
shared space while it is installed.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from digi.space import Space
from tests.chart_helpers import CHART, ROOT, helm, kubectl, set_args

pytestmark = pytest.mark.slow


class Release:
    def __init__(self, space: Space, namespace: str, home: Path) -> None:
        self.space, self.namespace, self.home = space, namespace, home
        self.name = f"digi-{uuid.uuid4().hex[:6]}"
        self.sa = self.name  # the release name contains the chart name: fullname = release
        self.values = {"webhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name": namespace}
        self.notes = ""

    def helm(self, *args: str, check: bool = True) -> Any:
        return helm(self.home, *args, "--namespace", self.namespace, kubeconfig=self.space.kubeconfig,
                    check=check)

    def install(self, **extra: str) -> Any:
        return self.helm("install", self.name, str(CHART), *set_args({**self.values, **extra}))

    def upgrade(self, **extra: str) -> Any:
        return self.helm("upgrade", self.name, str(CHART), *set_args({**self.values, **extra}))

    def can_i(self, verb: str, resource: str, namespace: str | None = None, subresource: str = "") -> bool:
        args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{self.namespace}:{self.sa}"]
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        if subresource:
            args += ["--subresource", subresource]
        result = kubectl(self.home, self.space.kubeconfig, *args, check=False)
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), result.stderr
        return answer == "yes"


@pytest.fixture
def release(space: Space, namespace: str, tmp_path: Path) -> Iterator[Release]:
    rel = Release(space, namespace, tmp_path)
    rel.notes = rel.install().stdout
    try:
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "--wait=false", check=False)


def test_install_creates_the_objects(release: Release, kube: client.ApiClient) -> None:
    ns, name = release.namespace, release.name
    status = json.loads(release.helm("status", name, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    notes = release.notes.partition("NOTES:")[2]
    assert f"rollout status deployment/{name}" in notes
    assert f"http://{name}.{ns}.svc:8080/metrics" in notes

    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(name, ns)
    manager = deployment.spec.template.spec.containers[0]
    assert "--leader-elect" in manager.args
    assert manager.readiness_probe.http_get.path == "/readyz"
    assert manager.security_context.read_only_root_filesystem is True
    assert deployment.spec.template.spec.security_context.run_as_non_root is True
    assert deployment.spec.template.spec.service_account_name == release.sa

    lake = apps.read_namespaced_stateful_set(f"{name}-lake", ns)
    assert lake.spec.volume_claim_templates[0].spec.resources.requests["storage"] == "10Gi"

    core = client.CoreV1Api(kube)
    core.read_namespaced_service_account(release.sa, ns)
    services = {s.metadata.name for s in core.list_namespaced_service(ns).items}
    assert services == {name, f"{name}-webhook", f"{name}-lake"}
    dashboards = core.list_namespaced_config_map(ns, label_selector="grafana_dashboard=1").items
    assert len(dashboards) == len(list((CHART / "dashboards").glob("*.json")))
    for cm in dashboards:
        for text in cm.data.values():
            assert json.loads(text)["panels"]

    rbac = client.RbacAuthorizationV1Api(kube)
    for role in (f"{name}-manager", f"{name}-kinds", f"{name}-kinds-aggregated"):
        binding = rbac.read_cluster_role_binding(role)
        assert binding.role_ref.name == role
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", release.sa, ns)]
    assert rbac.read_namespaced_role_binding(f"{name}-leader", ns).role_ref.name == f"{name}-leader"

    hooks = client.AdmissionregistrationV1Api(kube)
    (hook,) = hooks.read_validating_webhook_configuration(name).webhooks
    assert hook.client_config.service.name == f"{name}-webhook"
    tls = core.read_namespaced_secret(f"{name}-webhook-tls", ns)
    assert hook.client_config.ca_bundle == tls.data["ca.crt"]

    # CRDs from the chart's crds/ are installed before the templates.
    extensions = client.ApiextensionsV1Api(kube)
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd_name = yaml.safe_load(path.read_text())["metadata"]["name"]
        assert extensions.read_custom_resource_definition(crd_name).metadata.name == crd_name

    # Nothing here schedules or runs pods; say so instead of waiting for them.
    assert core.list_namespaced_pod(ns).items == []
    assert core.list_namespaced_persistent_volume_claim(ns).items == []


def test_upgrade_keeps_secrets_and_uninstall_removes_everything(
    release: Release, kube: client.ApiClient,
) -> None:
    ns, name = release.namespace, release.name
    core = client.CoreV1Api(kube)
    tls_before = core.read_namespaced_secret(f"{name}-webhook-tls", ns).data
    token_before = core.read_namespaced_secret(f"{name}-worker-token", ns).data
    checksum_before = client.AppsV1Api(kube).read_namespaced_deployment(name, ns) \
        .spec.template.metadata.annotations["checksum/webhook-tls"]

    release.upgrade(replicaCount="2", **{"workers.backend": "local"})
    status = json.loads(release.helm("status", name, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 2
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(name, ns)
    assert deployment.spec.replicas == 2
    assert "--worker-backend=local" in deployment.spec.template.spec.containers[0].args
    # The certificate and the token key survive the upgrade (Helm's lookup), so
    # running workers and the API server's caBundle stay valid and pods do not roll.
    assert core.read_namespaced_secret(f"{name}-webhook-tls", ns).data == tls_before
    assert core.read_namespaced_secret(f"{name}-worker-token", ns).data == token_before
    assert deployment.spec.template.metadata.annotations["checksum/webhook-tls"] == checksum_before
    assert base64.b64decode(token_before["worker-token.secret"])
    # The local backend needs no rights on Deployments and Secrets any more.
    assert not release.can_i("create", "deployments.apps", "default")

    release.helm("uninstall", name)
    assert release.helm("status", name, check=False).returncode != 0
    rbac = client.RbacAuthorizationV1Api(kube)
    gone = [
        lambda: client.AppsV1Api(kube).read_namespaced_deployment(name, ns),
        lambda: client.AppsV1Api(kube).read_namespaced_stateful_set(f"{name}-lake", ns),
        lambda: rbac.read_cluster_role(f"{name}-manager"),
        lambda: rbac.read_cluster_role_binding(f"{name}-kinds"),
        lambda: client.AdmissionregistrationV1Api(kube).read_validating_webhook_configuration(name),
        lambda: core.read_namespaced_secret(f"{name}-webhook-tls", ns),
    ]
    for read in gone:
        with pytest.raises(ApiException) as err:
            read()
        assert err.value.status == 404
    # Helm keeps CRDs on uninstall: deleting them would delete every object of the kind.
    extensions = client.ApiextensionsV1Api(kube)
    for path in sorted((CHART / "crds").glob("*.yaml")):
        extensions.read_custom_resource_definition(yaml.safe_load(path.read_text())["metadata"]["name"])


def apply_kind_crds(release: Release, *kinds: str) -> None:
    """The repo's digi kinds, as a user would (kubectl resolves names through discovery)."""
    for kind in kinds:
        kubectl(release.home, release.space.kubeconfig, "apply", "-f", str(ROOT / "digis" / kind / "crd.yaml"))


def test_manager_rbac_allows_its_work_and_nothing_else(release: Release, namespace: str) -> None:
    apply_kind_crds(release, "lamp", "room")
    allowed = [
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", None, ""),
        ("list", "lamps.mock.digi.dev", None, ""),
        ("patch", "rooms.mock.digi.dev", "default", ""),
        ("update", "syncs.digi.dev", "default", ""),
        ("patch", "yieldpolicies.digi.dev", "default", "status"),
        ("watch", "pipelets.digi.dev", None, ""),
        ("create", "events", "default", ""),
        ("create", "deployments.apps", "default", ""),
        ("delete", "deployments.apps", "default", ""),
        ("create", "secrets", "default", ""),
        ("update", "leases.coordination.k8s.io", namespace, ""),
    ]
    refused = [
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", None, ""),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", None, ""),
        ("delete", "lamps.mock.digi.dev", "default", ""),
        ("create", "lamps.mock.digi.dev", "default", ""),
        ("get", "secrets", "default", ""),
        ("list", "secrets", namespace, ""),
        ("create", "leases.coordination.k8s.io", "default", ""),
        ("create", "pods", "default", ""),
        ("delete", "namespaces", None, ""),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, ""),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None, ""),
        ("list", "configmaps", namespace, ""),
        ("update", "pipelets.digi.dev", "default", ""),
    ]
    for verb, resource, ns, sub in allowed:
        assert release.can_i(verb, resource, ns, sub), f"the manager may not {verb} {resource} {sub}"
    for verb, resource, ns, sub in refused:
        assert not release.can_i(verb, resource, ns, sub), f"the manager may {verb} {resource} {sub}"
    # Its own webhook configuration, by name only (to keep the rules current).
    webhook = f"validatingwebhookconfigurations.admissionregistration.k8s.io/{release.name}"
    assert release.can_i("update", webhook)
    assert not release.can_i("update", "validatingwebhookconfigurations.admissionregistration.k8s.io/other")


def test_a_kind_installed_later_gets_rights_through_a_labelled_cluster_role(
    release: Release, kube: client.ApiClient,
) -> None:
    """The aggregation route for kinds added after the chart. kube-controller-manager
    folds labelled ClusterRoles into <release>-kinds-aggregated; it does not run
    here, so this test checks the selector matches such a role and grants it by
    copying its rules as the aggregation controller would."""
    rbac = client.RbacAuthorizationV1Api(kube)
    extensions = client.ApiextensionsV1Api(kube)
    cows = f"cows{release.name.replace('-', '')}"
    crd = yaml.safe_load((ROOT / "digis" / "lamp" / "crd.yaml").read_text())
    crd["metadata"]["name"] = f"{cows}.farm.example.com"
    crd["spec"]["group"] = "farm.example.com"
    crd["spec"]["names"] = {"kind": cows.capitalize(), "plural": cows, "singular": cows[:-1] or cows,
                            "listKind": f"{cows.capitalize()}List"}
    extensions.create_custom_resource_definition(crd)
    resource = f"{cows}.farm.example.com"
    assert not release.can_i("patch", resource, "default")
    role_name = f"{release.name}-farm-cows"
    rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=role_name, labels={"digi.dev/aggregate-to-manager": "true"}),
        rules=[client.V1PolicyRule(api_groups=["farm.example.com"], resources=[cows],
                                   verbs=["get", "list", "watch", "update", "patch"])],
    ))
    try:
        aggregated = rbac.read_cluster_role(f"{release.name}-kinds-aggregated")
        (selector,) = aggregated.aggregation_rule.cluster_role_selectors
        labelled = rbac.list_cluster_role(label_selector=",".join(
            f"{k}={v}" for k, v in selector.match_labels.items())).items
        assert role_name in {r.metadata.name for r in labelled}
        aggregated.rules = [rule for r in labelled for rule in (r.rules or [])]
        rbac.replace_cluster_role(aggregated.metadata.name, aggregated)
        assert release.can_i("patch", resource, "default")
        assert not release.can_i("delete", resource, "default")
    finally:
        rbac.delete_cluster_role(role_name)
        extensions.delete_custom_resource_definition(crd["metadata"]["name"])


def test_plain_kubectl_uses_a_kind_on_a_cluster_running_the_chart(release: Release, namespace: str) -> None:
    """The README's plain-kubectl steps. The chart's webhook covers this namespace
    but no manager pod serves it here: failurePolicy Ignore lets the writes through."""
    kubectl(release.home, release.space.kubeconfig, "apply", "-f", str(ROOT / "digis" / "lamp" / "crd.yaml"))
    cr = (ROOT / "digis" / "lamp" / "deploy" / "cr.yaml").read_text().replace("{{ .Values.name }}", "l1")
    kubectl(release.home, release.space.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=cr)
    kubectl(release.home, release.space.kubeconfig, "patch", "-n", namespace, "lamp", "l1", "--type", "merge",
            "-p", '{"spec":{"control":{"power":{"intent":"on"}}}}')
    got = kubectl(release.home, release.space.kubeconfig, "get", "-n", namespace, "lamp", "l1",
                  "-o", "jsonpath={.spec.control.power.intent}")
    assert got.stdout == "on"
    assert release.can_i("patch", "lamps.mock.digi.dev/l1", namespace)


def test_the_real_manager_works_under_the_charts_service_account(
    space: Space, namespace: str, tmp_path: Path, kube: client.ApiClient,
) -> None:
    """`python -m manager` with the chart's flags, authenticated as the chart's
    ServiceAccount (a token from the TokenRequest API, as a pod would mount), runs
    the mount scenario with the kubernetes worker backend: every write it needs is
    allowed and none of its API requests is refused. The webhook is disabled in
    this release: no pod could serve it here, and its TLS wiring is covered above."""
    from tests.manager_fixtures import ManagerProcess, wait_for

    release = Release(space, namespace, tmp_path)
    release.values = {"webhook.enabled": "false"}
    release.install()
    try:
        token = kubectl(release.home, space.kubeconfig, "create", "token", release.sa, "-n", namespace,
                        "--duration", "1h").stdout.strip()
        admin = yaml.safe_load(space.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        sa_kubeconfig = tmp_path / "sa-kubeconfig"
        sa_kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [cluster],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        }))
        apply_kind_crds(release, "lamp", "room")
        manager = ManagerProcess(
            space, tmp_path / "manager", "--kubeconfig", str(sa_kubeconfig), "--leader-elect",
            "--leader-election-namespace", namespace, "--worker-image", "example/lamp:1",
            backend="kubernetes",
        ).start()
        try:
            custom = client.CustomObjectsApi(kube)
            cr = yaml.safe_load((ROOT / "digis" / "lamp" / "deploy" / "cr.yaml").read_text()
                               .replace("{{ .Values.name }}", "l1"))
            custom.create_namespaced_custom_object("mock.digi.dev", "v1", namespace, "lamps", cr)
            room = yaml.safe_load((ROOT / "digis" / "room" / "deploy" / "cr.yaml").read_text()
                                 .replace("{{ .Values.name }}", "r1"))
            custom.create_namespaced_custom_object("mock.digi.dev", "v1", namespace, "rooms", room)
            entry = f"{namespace}/l1"
            custom.patch_namespaced_custom_object("mock.digi.dev", "v1", namespace, "rooms", "r1", {"spec": {
                "mount": {"mock.digi.dev/v1/lamps": {entry: {"mode": "hide", "status": "active"}}}}})

            def replica() -> Any:
                room = custom.get_namespaced_custom_object("mock.digi.dev", "v1", namespace, "rooms", "r1")
                return room["spec"]["mount"]["mock.digi.dev/v1/lamps"][entry].get("spec")

            wait_for(replica, 60, "the mounter (as the ServiceAccount) to copy the lamp up into the room")
            # No driver runs here (no pods), so the test sets the intent in the room's
            # replica, as the room's driver would.
            custom.patch_namespaced_custom_object("mock.digi.dev", "v1", namespace, "rooms", "r1", {"spec": {
                "mount": {"mock.digi.dev/v1/lamps": {entry: {"spec": {"control": {"power": {"intent": "on"}}}}}}}})

            def lamp_intent() -> Any:
                lamp = custom.get_namespaced_custom_object("mock.digi.dev", "v1", namespace, "lamps", "l1")
                return lamp["spec"]["control"]["power"].get("intent") == "on"

            wait_for(lamp_intent, 60, "the mounter (as the ServiceAccount) to write the intent down")
            apps = client.AppsV1Api(kube)
            wait_for(lambda: apps.read_namespaced_deployment("lamp-l1", namespace), 60,
                     "the kubernetes backend (as the ServiceAccount) to create the worker Deployment")
            lease = client.CoordinationV1Api(kube).read_namespaced_lease("digi-manager", namespace)
            assert lease.spec.holder_identity
            samples = manager.metrics()["rest_client_requests_total"]
            codes = {labels["code"] for labels, value in samples if value}
            assert {"200", "201"} <= codes, samples  # it did read and create as the ServiceAccount
            assert not {"401", "403"} & codes, f"requests refused: {samples}\n{manager.log()[-3000:]}"
            assert "forbidden" not in manager.log().lower(), manager.log()[-3000:]
        finally:
            manager.stop()
    finally:
        release.helm("uninstall", release.name, "--wait=false", check=False)


def _post_over_tls(port: int, server_name: str, ca_pem: bytes, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to 127.0.0.1:port, verifying the server's certificate for `server_name`
    against `ca_pem`, as the API server does for the webhook Service's DNS name."""
    import socket
    import ssl

    context = ssl.create_default_context(cadata=ca_pem.decode())
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(head + payload)
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    status, _, rest = response.partition(b"\r\n")
    assert b" 200 " in status, response[:500]
    return json.loads(rest.partition(b"\r\n\r\n")[2])


def test_the_manager_serves_the_webhook_with_the_charts_certificate(
    release: Release, namespace: str, tmp_path: Path, kube: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Helm-made certificate, as the pod mounts it, works with the real manager's
    webhook server: the TLS handshake verifies against the configuration's caBundle
    for the Service's DNS name, and reviews are decided. (The API server cannot reach
    a Service here, without kube-proxy or pods, so the test makes the call itself.)"""
    from digi.space.ports import free_ports
    from tests.manager_fixtures import ManagerProcess

    core = client.CoreV1Api(kube)
    cert_dir = tmp_path / "serving-certs"
    cert_dir.mkdir()
    for key, value in core.read_namespaced_secret(f"{release.name}-webhook-tls", namespace).data.items():
        (cert_dir / key).write_bytes(base64.b64decode(value))
    (hook,) = client.AdmissionregistrationV1Api(kube).read_validating_webhook_configuration(release.name).webhooks
    ca_pem = base64.b64decode(hook.client_config.ca_bundle)
    server_name = f"{hook.client_config.service.name}.{namespace}.svc"
    (port,) = free_ports(1)
    monkeypatch.setenv("DIGI_WEBHOOK_BIND_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setenv("DIGI_WEBHOOK_CERT_DIR", str(cert_dir))
    apply_kind_crds(release, "lamp", "room")
    manager = ManagerProcess(release.space, tmp_path / "manager").start()
    hooks = client.AdmissionregistrationV1Api(kube)
    try:
        lamp = yaml.safe_load((ROOT / "digis" / "lamp" / "deploy" / "cr.yaml").read_text()
                              .replace("{{ .Values.name }}", "l1"))
        lamp["metadata"]["namespace"] = namespace
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": "CREATE", "namespace": namespace, "object": lamp,
            "resource": {"group": "mock.digi.dev", "version": "v1", "resource": "lamps"}}}
        answer = _post_over_tls(port, server_name, ca_pem, "/validate", review)
        assert answer["response"] == {**answer["response"], "uid": "u-1", "allowed": True}

        room = yaml.safe_load((ROOT / "digis" / "room" / "deploy" / "cr.yaml").read_text()
                              .replace("{{ .Values.name }}", "r1"))
        room["metadata"]["namespace"] = namespace
        room["spec"]["mount"] = {"mock.digi.dev/v1/rooms": {f"{namespace}/r1": {"mode": "hide"}}}
        review["request"] = {**review["request"], "uid": "u-2", "object": room,
                             "resource": {"group": "mock.digi.dev", "version": "v1", "resource": "rooms"}}
        answer = _post_over_tls(port, server_name, ca_pem, "/validate", review)
        assert answer["response"]["allowed"] is False and "loop" in answer["response"]["status"]["message"]
    finally:
        manager.stop()
        # The manager registered its loopback configuration in the shared space; remove
        # it if it is still this manager's (another test's manager may own it by now).
        for config in hooks.list_validating_webhook_configuration().items:
            if any(w.client_config.url == f"https://127.0.0.1:{port}/validate" for w in config.webhooks or []):
                hooks.delete_validating_webhook_configuration(config.metadata.name)
