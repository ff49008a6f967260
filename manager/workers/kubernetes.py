"""The kubernetes backend: a Deployment (and a Secret with the token) per digi.

The Deployment `<kind>-<name>` (`object_name`: made a DNS label, with a hash
appended when it had to be cut or changed) in the digi's namespace runs one replica of the
kind's image; its pod gets the worker environment (GROUP, VERSION, PLURAL,
KIND, NAME, NAMESPACE, DIGI_MANAGER_URL, DIGI_LAKE_URL) and DIGI_TOKEN from
the Secret of the same name. Both carry an owner reference to the digi, so
deleting the digi garbage-collects them. The pod runs with
`automountServiceAccountToken: false`: workers hold no Kubernetes credentials.
Objects are applied with server-side apply (field manager `digi-manager`), so
`ensure` is idempotent and converges edits. Shared workers are a local-backend
feature for now: here every digi of a shared kind still gets its own Deployment.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import threading
from typing import Any

from digi.errors import NotFound
from manager.events import NORMAL, WARNING
from manager.kube import Client, gvr_path
from manager.types import GVR, ObjectKey
from manager.workers.base import DEPLOYED, NO_DRIVER, WorkerSpec
from manager.workers.local import Record

log = logging.getLogger(__name__)

DEPLOYMENT_GVR = GVR("apps", "v1", "deployments")
SECRET_GVR = GVR("", "v1", "secrets")
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "digi-manager"


_MAX_NAME = 63  # a DNS label: a valid label value and pod hostname prefix
_HASH = 10


def object_name(kind: str, name: str) -> str:
    """`<kind>-<name>` in lower case, a DNS label of at most 63 characters.

    Digi names may be 253 characters and hold dots. When `<kind>-<name>` is not a
    DNS label as it is, it is cut (and dots replaced) and a hash of the full form is
    appended: a plain cut gave two long names with the same first 63 characters (or
    `a.b` and `a-b`) one Deployment and Secret, so one digi's worker replaced the other's."""
    full = f"{kind.lower()}-{name}"
    label = re.sub(r"[^a-z0-9-]", "-", full)
    if label == full and len(label) <= _MAX_NAME:
        return label
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH]
    return f"{label[:_MAX_NAME - _HASH - 1].rstrip('-')}-{digest}"


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def deployment(spec: WorkerSpec, image: str) -> dict[str, Any]:
    name = object_name(spec.kind, spec.key.name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "digi-worker",
              "app.kubernetes.io/managed-by": FIELD_MANAGER, "digi.dev/kind": spec.kind.lower()}
    # A label value has at most 63 characters; a longer name is still in the owner reference.
    if len(spec.key.name) <= _MAX_NAME:
        labels["digi.dev/name"] = spec.key.name
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items()) if k != "DIGI_TOKEN"]
    env.append({"name": "DIGI_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": spec.key.namespace, "labels": labels,
                     "ownerReferences": [owner_reference(spec.obj)]},
        "spec": {
            "replicas": 1,
            # One driver per digi at a time: never run old and new pods together.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "driver", "image": image, "env": env}],
                },
            },
        },
    }


def token_secret(spec: WorkerSpec) -> dict[str, Any]:
    name = object_name(spec.kind, spec.key.name)
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": spec.key.namespace,
                     "ownerReferences": [owner_reference(spec.obj)]},
        "data": {"token": base64.b64encode(spec.env["DIGI_TOKEN"].encode()).decode()},
    }


class KubernetesBackend:
    shared_workers = False

    def __init__(self, client: Client, record: Record, default_image: str | None = None) -> None:
        self.client = client
        self.record = record
        self.default_image = default_image
        self._states: dict[ObjectKey, str] = {}
        self._applied: dict[ObjectKey, WorkerSpec] = {}
        self._lock = threading.Lock()

    def ensure(self, spec: WorkerSpec) -> None:
        with self._lock:
            if self._applied.get(spec.key) == spec:
                return
        image = spec.image or self.default_image
        if not image:
            with self._lock:
                self._states[spec.key] = NO_DRIVER
            self.record(spec.obj, WARNING, "NoImage",
                        "cannot deploy a worker: no image; annotate the digi or its CRD with "
                        "digi.dev/image=<image>, or start the manager with --worker-image")
            return
        name = object_name(spec.kind, spec.key.name)
        for gvr, body in ((SECRET_GVR, token_secret(spec)), (DEPLOYMENT_GVR, deployment(spec, image))):
            self.client.request(
                "PATCH", gvr_path(gvr, spec.key.namespace, name), body=body, content_type=APPLY,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
            )
        with self._lock:
            fresh = spec.key not in self._applied
            self._applied[spec.key] = spec
            self._states[spec.key] = DEPLOYED
        if fresh:
            self.record(spec.obj, NORMAL, "WorkerDeployed", f"Deployment {spec.key.namespace}/{name} runs {image}")

    def remove(self, key: ObjectKey) -> None:
        """The owner reference lets the garbage collector delete the objects with the digi;
        deleting them here also covers a digi whose worker is turned off while it lives."""
        with self._lock:
            spec = self._applied.pop(key, None)
            self._states.pop(key, None)
        if spec is None:
            return
        name = object_name(spec.kind, key.name)
        for gvr in (DEPLOYMENT_GVR, SECRET_GVR):
            with contextlib.suppress(NotFound):
                self.client.delete(gvr, key.namespace, name)

    def states(self) -> dict[ObjectKey, str]:
        with self._lock:
            return dict(self._states)

    def shutdown(self) -> None:
        """Deployments outlive the manager: workers reconnect to the next leader."""
