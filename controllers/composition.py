"""Wires the composition controllers into a manager: mounter, admission webhook, syncer, policer.

The manager's entry point calls `controllers.setup(mgr)` → `setup_from_env`
→ `setup(mgr, webhook=...)` once, before `mgr.run()`. It registers the
controllers, a hook that creates the `Sync` and `YieldPolicy` CRDs when this
manager starts leading and they are missing (from `crds/` of the source
checkout; a Helm install ships them itself, and a standby never writes), and,
when `webhook` is given, serves the validating webhook over TLS and keeps its
`ValidatingWebhookConfiguration` current. `webhook_tls`
builds the `WebhookTLS` from the manager's flags (`--webhook-bind-address`,
`--webhook-cert-dir` holding `tls.crt`, `tls.key` and `ca.crt`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controllers import policer, syncer
from controllers.admission import (
    CONFIG_NAME,
    Admission,
    WebhookServer,
    WebhookTLS,
    install,
    list_stored_digis,
)
from controllers.crds import CRD_DIR, ensure_crds
from controllers.mounter.controller import ManagerLike, Mounter

OWN_CRDS = tuple(CRD_DIR / name for name in ("sync.yaml", "yieldpolicy.yaml"))


@dataclass
class Composition:
    mounter: Mounter
    syncer: syncer.Syncer
    policer: policer.Policer
    webhook: WebhookServer | None


def webhook_tls(bind_address: str, cert_dir: Path) -> WebhookTLS:
    """`host:port` and a directory with tls.crt, tls.key, ca.crt → WebhookTLS."""
    host, _, port = bind_address.rpartition(":")
    if not port.isdigit():
        raise ValueError(
            f"--webhook-bind-address {bind_address!r} is not host:port, e.g. 127.0.0.1:9443"
        )
    return WebhookTLS(
        host or "127.0.0.1",
        int(port),
        cert=cert_dir / "tls.crt",
        key=cert_dir / "tls.key",
        ca=cert_dir / "ca.crt",
    )


def setup(
    mgr: ManagerLike,
    *,
    webhook: WebhookTLS | None = None,
    strict: bool = False,
    config_name: str = CONFIG_NAME,
    managed: bool = True,
) -> Composition:
    mgr.on_leading(lambda: ensure_crds(mgr.client, OWN_CRDS))
    mounter = Mounter(mgr, strict=strict)
    server = None
    if webhook is not None:
        admission = Admission(lambda: list_stored_digis(mgr.client, mgr.cache.digi_kinds))
        server = install(mgr, admission, webhook, config_name=config_name, managed=managed)
    return Composition(mounter, syncer.setup(mgr), policer.setup(mgr), server)


def setup_from_env(mgr: ManagerLike, environ: Mapping[str, str] = os.environ) -> Composition:
    """`setup` configured by the environment the space gives the manager (digi/space/webhook.py).

    `DIGI_WEBHOOK_BIND_ADDRESS` and `DIGI_WEBHOOK_CERT_DIR` turn the webhook on;
    `DIGI_WEBHOOK_CONFIG_NAME` names its ValidatingWebhookConfiguration; with
    `DIGI_WEBHOOK_SERVICE` (the Helm chart: the configuration calls a Service and
    its CA is the installer's) only the rules are kept current;
    `DIGI_STRICT_MOUNT=true` selects strict trimming (the original's `STRICT_MOUNT`).
    """
    bind, cert_dir = environ.get("DIGI_WEBHOOK_BIND_ADDRESS"), environ.get("DIGI_WEBHOOK_CERT_DIR")
    webhook = webhook_tls(bind, Path(cert_dir)) if bind and cert_dir else None
    return setup(
        mgr,
        webhook=webhook,
        strict=environ.get("DIGI_STRICT_MOUNT", "false") == "true",
        config_name=environ.get("DIGI_WEBHOOK_CONFIG_NAME") or CONFIG_NAME,
        managed=not environ.get("DIGI_WEBHOOK_SERVICE"),
    )
