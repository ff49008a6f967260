"""The meta controllers' own CRDs (Sync, YieldPolicy, Pipelet), created by the leader.

A controller's `setup` registers `mgr.on_leading(lambda: ensure_crds(mgr.client, files))`,
so only the manager that holds the lease writes them, once it leads; a standby
reads and waits. The YAML comes from `crds/` of the source checkout. A CRD that
exists is left as it is; another manager creating it first (409 AlreadyExists)
is success; no RBAC for CRDs (403: an installer such as the Helm chart ships
them) and any other API error are logged per file, so one failing CRD does not
keep the others from being created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from digi.errors import DigiError, Forbidden
from manager.kube import AlreadyExists
from manager.types import GVR

log = logging.getLogger(__name__)

CRD_GVR = GVR("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD_DIR = Path(__file__).resolve().parent.parent / "crds"


def ensure_crd(client: Any, path: Path) -> None:
    """Create the CRD in `path` unless it exists (see the module docstring for errors)."""
    if not path.exists():
        log.warning("%s not found; apply that CRD yourself (the Helm chart ships it)", path)
        return
    body = yaml.safe_load(path.read_text())
    name = body["metadata"]["name"]
    try:
        if client.get_or_none(CRD_GVR, None, name) is None:
            client.create(CRD_GVR, None, body)
            log.info("created CRD %s", name)
    except AlreadyExists:
        pass
    except Forbidden as err:
        log.warning("not allowed to create CRD %s; install it with the chart or kubectl: %s", name, err)
    except DigiError as err:
        log.warning("cannot ensure CRD %s: %s", name, err)


def ensure_crds(client: Any, paths: Iterable[Path]) -> None:
    for path in paths:
        ensure_crd(client, path)
