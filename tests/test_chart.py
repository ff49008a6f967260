"""The Helm chart, rendered by the real `helm`: lint, what it renders, and the
space's real API server accepting it (`kubectl apply --dry-run=server`).

Installing it, upgrading, uninstalling and RBAC are in test_chart_install.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from digi.space import Space
from tests.chart_helpers import CHART, helm, kubectl, render, template


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def rules(objects: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for (kind, _), o in objects.items() if kind in ("ClusterRole", "Role")
            for r in o.get("rules") or []]


def test_lint_is_clean(tmp_path: Path) -> None:
    result = helm(tmp_path, "lint", "--strict", str(CHART))
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
    assert "0 chart(s) failed" in result.stdout


def test_values_schema_refuses_bad_values(tmp_path: Path) -> None:
    for key, value, field in (("workers.backend", "docker", "/workers/backend"),
                              ("webhook.failurePolicy", "Sometimes", "/webhook/failurePolicy"),
                              ("image.pullPolicy", "Maybe", "/image/pullPolicy"),
                              ("lake.persistence.size", "lots", "/lake/persistence/size")):
        result = helm(tmp_path, "template", "t", str(CHART), "--set", f"{key}={value}", check=False)
        assert result.returncode != 0 and field in result.stderr, (key, result.stderr)


def test_manager_deployment(tmp_path: Path) -> None:
    objects = render(tmp_path, values={"workers.image": "example/lamp:1"})
    deployment = objects[("Deployment", "t-digi")]
    pod = deployment["spec"]["template"]["spec"]
    manager = containers(deployment)["manager"]
    args = manager["args"]
    assert "--leader-elect" in args and "--leader-election-namespace=digi-system" in args
    assert "--worker-backend=kubernetes" in args and "--worker-image=example/lamp:1" in args
    assert "--lake-url=http://t-digi-lake.digi-system.svc:9867" in args
    assert "--manager-url=http://t-digi.digi-system.svc:8081" in args
    # Probes hit the port the manager serves /healthz and /readyz on.
    ports = {p["name"]: p["containerPort"] for p in manager["ports"]}
    assert f"--health-probe-bind-address=:{ports['http']}" in args
    assert f"--metrics-bind-address=:{ports['metrics']}" in args
    assert manager["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert manager["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert manager["resources"]["requests"] and manager["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert manager["securityContext"]["readOnlyRootFilesystem"] is True
    assert manager["securityContext"]["allowPrivilegeEscalation"] is False
    assert manager["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Every path the manager writes is a volume, since the root filesystem is read-only.
    mounts = {m["mountPath"] for m in manager["volumeMounts"]}
    assert {"/tmp", "/var/lib/digi"} <= mounts and "--root=/var/lib/digi" in args
    env = {e["name"]: e.get("value") for e in manager["env"]}
    assert env["DIGI_WEBHOOK_CERT_DIR"] in mounts
    assert env["DIGI_WEBHOOK_BIND_ADDRESS"] == f"0.0.0.0:{ports['webhook']}"


def test_replicas_without_leader_election_are_refused(tmp_path: Path) -> None:
    result = helm(tmp_path, "template", "t", str(CHART), "--set", "replicaCount=2",
                  "--set", "leaderElection.enabled=false", check=False)
    assert result.returncode != 0 and "leaderElection.enabled" in result.stderr


def test_rbac_has_no_wildcards_and_follows_the_backend(tmp_path: Path) -> None:
    kube_backend = render(tmp_path)
    for rule in rules(kube_backend):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(field) or []), rule
    granted = {(g, r) for rule in rules(kube_backend) for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("apps", "deployments") in granted and ("", "secrets") in granted
    local = render(tmp_path, values={"workers.backend": "local"})
    granted = {(g, r) for rule in rules(local) for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("apps", "deployments") not in granted and ("", "secrets") not in granted
    # Leases only in the release namespace, through a Role.
    (leader,) = [o for (kind, _), o in kube_backend.items() if kind == "Role"]
    assert leader["metadata"]["namespace"] == "digi-system"
    assert leader["rules"][0]["resources"] == ["leases"]


def test_digi_kinds_feed_rbac_and_webhook_rules(tmp_path: Path) -> None:
    objects = render(tmp_path, values={"digiKinds[0].group": "farm.example.com",
                                       "digiKinds[0].resources": "{cows,barns}"})
    kinds_role = objects[("ClusterRole", "t-digi-kinds")]
    assert kinds_role["rules"] == [{"apiGroups": ["farm.example.com"], "resources": ["cows", "barns"],
                                    "verbs": ["get", "list", "watch", "update", "patch"]}]
    assert kinds_role["metadata"]["labels"]["digi.dev/aggregate-to-manager"] == "true"
    aggregated = objects[("ClusterRole", "t-digi-kinds-aggregated")]
    assert aggregated["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"digi.dev/aggregate-to-manager": "true"}}]
    (hook,) = objects[("ValidatingWebhookConfiguration", "t-digi")]["webhooks"]
    assert [(r["apiGroups"], r["resources"]) for r in hook["rules"]] == [(["farm.example.com"], ["cows", "barns"])]


def test_helm_generated_webhook_certificate(tmp_path: Path) -> None:
    objects = render(tmp_path)
    (hook,) = objects[("ValidatingWebhookConfiguration", "t-digi")]["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": "t-digi-webhook", "namespace": "digi-system",
                                               "path": "/validate", "port": 443}
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    secret = objects[("Secret", "t-digi-webhook-tls")]
    ca_pem = base64.b64decode(hook["clientConfig"]["caBundle"])
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca_pem
    ca = x509.load_pem_x509_certificate(ca_pem)
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "t-digi-webhook.digi-system.svc" in names.get_values_for_type(x509.DNSName)
    # The webhook Service reaches the manager's webhook port.
    service = objects[("Service", "t-digi-webhook")]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"


def test_cert_manager_certificate(tmp_path: Path) -> None:
    objects = render(tmp_path, values={"webhook.certificate.source": "cert-manager"})
    hook = objects[("ValidatingWebhookConfiguration", "t-digi")]
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "digi-system/t-digi-webhook"
    assert "caBundle" not in hook["webhooks"][0]["clientConfig"]
    certificate = objects[("Certificate", "t-digi-webhook")]
    assert certificate["spec"]["secretName"] == "t-digi-webhook-tls"
    assert "t-digi-webhook.digi-system.svc" in certificate["spec"]["dnsNames"]
    assert ("Secret", "t-digi-webhook-tls") not in objects  # cert-manager writes it


def test_lake_statefulset_and_dashboards(tmp_path: Path) -> None:
    objects = render(tmp_path)
    lake = objects[("StatefulSet", "t-digi-lake")]
    (claim,) = lake["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert objects[("Service", "t-digi-lake")]["spec"]["ports"][0]["port"] == 9867
    dashboards = {name: o for (kind, name), o in objects.items()
                  if kind == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"}
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert len(dashboards) == len(files) >= 1
    for path in files:
        (data,) = dashboards[f"t-digi-dashboard-{path.stem}"]["data"].values()
        assert json.loads(data) == json.loads(path.read_text())


def test_optional_objects_follow_values(tmp_path: Path) -> None:
    default = render(tmp_path)
    assert not any(kind == "ServiceMonitor" for kind, _ in default)
    monitored = render(tmp_path, values={"serviceMonitor.enabled": "true"})
    (endpoint,) = monitored[("ServiceMonitor", "t-digi")]["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    bare = render(tmp_path, values={"webhook.enabled": "false", "lake.enabled": "false",
                                    "lake.externalUrl": "http://lake.example:9867",
                                    "dashboards.enabled": "false"})
    kinds = {kind for kind, _ in bare}
    assert not kinds & {"ValidatingWebhookConfiguration", "StatefulSet", "ConfigMap"}
    args = containers(bare[("Deployment", "t-digi")])["manager"]["args"]
    assert "--lake-url=http://lake.example:9867" in args


@pytest.mark.slow
@pytest.mark.parametrize("values", [{}, {"workers.backend": "local", "replicaCount": "2"}],
                         ids=["defaults", "local-backend"])
def test_rendered_chart_is_accepted_by_the_api_server(
    space: Space, namespace: str, tmp_path: Path, values: dict[str, str],
) -> None:
    """`kubectl apply --dry-run=server`: the real API server validates every object
    (schemas, RBAC escalation rules, webhook configuration) without storing it."""
    crds = kubectl(tmp_path, space.kubeconfig, "apply", "--dry-run=server", "-f", str(CHART / "crds"))
    rendered = template(tmp_path, namespace=namespace, release="dry", values=values)
    result = kubectl(tmp_path, space.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=rendered)
    created = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(created) == rendered.count("\nkind: "), result.stdout
    assert crds.returncode == 0
