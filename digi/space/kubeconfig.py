"""The kubeconfig of the local dSpace: admin client-cert auth, credentials embedded.

Embedding the PEMs (the `-data` fields) makes the file self-contained, so it can be
copied elsewhere and read by kubectl and the `kubernetes` Python client alike.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from digi.space.pki import Pki

CONTEXT = "digi"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    """Write (atomically, mode 0600) a kubeconfig for `server` as the dSpace admin."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "digi-admin",
                "user": {
                    "client-certificate-data": _b64(pki.admin_cert),
                    "client-key-data": _b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "digi-admin"}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    tmp.replace(path)
