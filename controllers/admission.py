"""The validating admission webhook for composition (§5.3), served by the manager over TLS.

Data flow: the API server POSTs an `AdmissionReview` (v1) to `/validate` for
every CREATE of a digi and for every UPDATE that adds a child to `spec.mount`
or changes an entry's mode or status. The webhook's `matchConditions` (CEL,
`MOUNTS_CHANGED`) make the API server skip all other updates: drivers' status
writes and the mounter's replica writes are most of a space's traffic, and a
review carries the whole object twice (a room with 100 replicas is ~100 KB of
JSON to parse) for an answer that can only be "allowed". `Admission.review`
parses the new object's `spec.mount` and answers:

- allowed, when the write does not change which children the digi mounts
  (yield/activate), so nothing is read;
- refused, when a mount entry is malformed (the message names the field);
- otherwise the graph of the *stored* digis, listed fresh from the API server
  (the informer cache may lag a write that just returned), is asked whether the
  new edges keep the multitree: a loop or a diamond is refused with the path.

A second active parent is allowed: the mounter stores it as an inactive mount
(the automatic yield), the same answer the CLI gives.

Failure policy (documented in docs/composition.md): the webhook is registered
with `failurePolicy: Ignore` and a short timeout, so a stopped manager never
blocks writes to digis. What slips through meanwhile is re-validated when the
manager starts: the mounter's graph reports violating edges (Warning Event
`MountRejected` with the path) and carries no data over them, and second active
parents are yielded. `WebhookServer` is the TLS uvicorn server; `registration`
builds the `ValidatingWebhookConfiguration` for the digi kinds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI

from controllers.graph import CompositionError, CompositionGraph, digi_key, mounts_of
from digi.errors import Conflict
from manager import metrics
from manager.types import GVR

log = logging.getLogger(__name__)

JSON = dict[str, Any]
WEBHOOK_NAME = "mount.digi.dev"
CONFIG_NAME = "digi-composition"
VWC_GVR = GVR("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
TIMEOUT_SECONDS = 5
WEBHOOK_PATH = "/validate"

# True for a CREATE, and for an UPDATE whose spec.mount gains a child type, a child, or a
# changed mode/status; `Admission.decide` allows every other write without reading anything.
# Evaluated by the API server; an evaluation error skips the webhook (failurePolicy Ignore),
# which is what a malformed mount map gets from the schema and the mounter's re-check anyway.
_ENTRY = "object.spec.mount[g][k]"
_OLD_ENTRY = "oldObject.spec.mount[g][k]"
MOUNTS_CHANGED = (
    "request.operation == 'CREATE' || ("
    "has(object.spec) && has(object.spec.mount) && object.spec.mount.exists(g, "
    "!has(oldObject.spec) || !has(oldObject.spec.mount) || !(g in oldObject.spec.mount) || "
    "object.spec.mount[g].exists(k, !(k in oldObject.spec.mount[g]) || "
    + " || ".join(
        f"(has({_ENTRY}.{f}) ? {_ENTRY}.{f} : '') != (has({_OLD_ENTRY}.{f}) ? {_OLD_ENTRY}.{f} : '')"
        for f in ("mode", "status"))
    + ")))"
)
MATCH_CONDITIONS = [{"name": "mounts-changed", "expression": MOUNTS_CHANGED}]


def _children(gvr: GVR, obj: JSON | None) -> set[Any]:
    if not obj:
        return set()
    return {m.child for m in mounts_of(gvr, obj)}


class Admission:
    """Decides AdmissionReviews; `stored_digis()` lists every digi as (gvr, object)."""

    def __init__(self, stored_digis: Callable[[], Iterable[tuple[GVR, JSON]]]) -> None:
        self.stored_digis = stored_digis
        # Serialise the mount-changing reviews so two of them are not both checked
        # against a state that contains neither.
        self._lock = threading.Lock()

    def decide(self, gvr: GVR, obj: JSON, old: JSON | None) -> str | None:
        """None to allow, else the reason for refusing."""
        try:
            new_children = _children(gvr, obj)
            old_children = _children(gvr, old)
        except ValueError as err:
            return f"{obj.get('kind', 'digi')} {obj['metadata'].get('name')}: {err}"
        if new_children <= old_children:
            return None
        with self._lock:
            graph = CompositionGraph.build(self.stored_digis())
            try:
                graph.check_update(digi_key(gvr, obj), mounts_of(gvr, obj))
            except CompositionError as err:
                return str(err)
        return None

    def review(self, body: JSON) -> JSON:
        request = body.get("request") or {}
        uid = request.get("uid", "")
        response: JSON = {"uid": uid, "allowed": True}
        obj = request.get("object")
        if request.get("operation") in ("CREATE", "UPDATE") and obj:
            res = request.get("resource") or {}
            gvr = GVR(res.get("group", ""), res.get("version", ""), res.get("resource", ""))
            obj = {**obj, "metadata": {"namespace": request.get("namespace"), **obj["metadata"]}}
            reason = self.decide(gvr, obj, request.get("oldObject"))
            if reason is not None:
                log.info("admission: refused %s %s: %s", gvr, obj["metadata"].get("name"), reason)
                response = {
                    "uid": uid,
                    "allowed": False,
                    "status": {"code": 403, "reason": "Forbidden", "message": reason},
                }
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }

    def router(self) -> APIRouter:
        router = APIRouter()

        def validate(body: dict[str, Any]) -> JSON:
            with metrics.webhook_latency_seconds.labels(WEBHOOK_PATH).time():
                review = self.review(body)
            metrics.webhook_requests_total.labels(WEBHOOK_PATH, "200").inc()
            return review

        router.add_api_route(WEBHOOK_PATH, validate, methods=["POST"])
        return router


def list_stored_digis(client: Any, kinds: Callable[[], Iterable[GVR]]) -> list[tuple[GVR, JSON]]:
    """Every digi of every kind, read from the API server (not from a cache)."""
    out: list[tuple[GVR, JSON]] = []
    for gvr in kinds():
        items, _ = client.list_all(gvr)
        out.extend((gvr, item) for item in items)
    return out


def rules_for(gvrs: Iterable[GVR]) -> list[JSON]:
    """Webhook rules covering exactly the digi kinds `gvrs` (CREATE and UPDATE)."""
    by_group: dict[tuple[str, str], list[str]] = {}
    for gvr in sorted(set(gvrs)):
        by_group.setdefault((gvr.group, gvr.version), []).append(gvr.plural)
    return [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": plurals,
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for (group, version), plurals in sorted(by_group.items())
    ]


def registration(url: str, ca_bundle: str, gvrs: Iterable[GVR], name: str = CONFIG_NAME) -> JSON:
    """The ValidatingWebhookConfiguration for `gvrs`, calling `url` (…/validate)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "digi"}},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": {"url": url, "caBundle": ca_bundle},
                "rules": rules_for(gvrs),
                "matchConditions": MATCH_CONDITIONS,
                # Ignore: a stopped manager must not brick the space (see the module docstring).
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "admissionReviewVersions": ["v1"],
                "matchPolicy": "Equivalent",
            }
        ],
    }


@dataclass(frozen=True)
class WebhookTLS:
    """Where the webhook listens and its credentials (PEM files signed by the dSpace CA)."""

    host: str
    port: int
    cert: Path
    key: Path
    ca: Path

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{WEBHOOK_PATH}"


class WebhookServer:
    """A uvicorn server with TLS for the webhook app, on its own thread."""

    def __init__(self, app: FastAPI, tls: WebhookTLS) -> None:
        config = uvicorn.Config(
            app,
            host=tls.host,
            port=tls.port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(tls.cert),
            ssl_keyfile=str(tls.key),
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not self.server.started:
            raise RuntimeError(
                f"admission webhook could not listen on {self.server.config.host}:"
                f"{self.server.config.port}; pick another --webhook-bind-address"
            )

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)


def install(
    mgr: Any,
    admission: Admission,
    tls: WebhookTLS,
    *,
    config_name: str = CONFIG_NAME,
    managed: bool = True,
) -> WebhookServer:
    """Serve `admission` over TLS and keep the ValidatingWebhookConfiguration current.

    The leader rewrites it on start and whenever a digi kind appears or goes
    away, so its rules always list exactly the digi kinds. `managed` (the local
    dSpace): the manager owns the whole configuration and calls itself by URL
    with the dSpace CA. Otherwise (the Helm chart) the configuration, its
    Service and its CA belong to the installer and only the rules are updated.
    """
    app = FastAPI(title="digi admission", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(admission.router())
    server = WebhookServer(app, tls)
    server.start()
    lock = threading.Lock()

    def register(*_: Any) -> None:
        if not mgr.is_leader:
            return
        kinds = mgr.cache.digi_kinds()
        with lock:
            if managed:
                ca_bundle = base64.b64encode(tls.ca.read_bytes()).decode()
                write_registration(mgr.client, registration(tls.url, ca_bundle, kinds, config_name))
            else:
                update_webhook(mgr.client, config_name, rules_for(kinds))

    mgr.on_leading(register)
    mgr.cache.on_digi_kind(register)
    mgr.on_shutdown(server.stop)
    return server


def write_registration(client: Any, body: JSON) -> None:
    """Create or update the configuration (retrying a conflicting update on fresh state)."""
    name = body["metadata"]["name"]
    for _ in range(5):
        current = client.get_or_none(VWC_GVR, None, name)
        try:
            if current is None:
                client.create(VWC_GVR, None, body)
            else:
                meta = {
                    **body["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                }
                client.update(VWC_GVR, None, {**body, "metadata": meta})
            return
        except Conflict:
            continue
    raise Conflict(f"validatingwebhookconfiguration {name} kept changing; not updated")


def update_webhook(client: Any, name: str, rules: list[JSON]) -> None:
    """Set the rules and match conditions of our webhook in someone else's configuration
    (the Helm chart's), keeping the rest: the CEL condition is defined once, here."""
    for _ in range(5):
        current = client.get_or_none(VWC_GVR, None, name)
        if current is None:
            log.warning(
                "validatingwebhookconfiguration %s does not exist; the installer creates it "
                "(set DIGI_WEBHOOK_CONFIG_NAME to its name)",
                name,
            )
            return
        webhooks = [
            {**w, "rules": rules, "matchConditions": MATCH_CONDITIONS} if w.get("name") == WEBHOOK_NAME else w
            for w in current.get("webhooks") or []
        ]
        if webhooks == current.get("webhooks"):
            return
        try:
            client.update(VWC_GVR, None, {**current, "webhooks": webhooks})
            return
        except Conflict:
            continue
    raise Conflict(f"validatingwebhookconfiguration {name} kept changing; rules not updated")
