"""What every worker backend receives and offers.

The dispatcher builds a `WorkerSpec` for each digi from its object, its CRD
and the manager's settings, then calls `Backend.ensure(spec)` (idempotent: a
running worker with the same spec is left alone) or `Backend.remove(key)`.

Where the driver is: the annotation `digi.dev/driver-dir` (a directory holding
`handler.py`), looked up on the digi first, then on its CRD; `digi run` sets it
on the digi. The kubernetes backend's image: annotation `digi.dev/image` on the
digi, then on the CRD, then the manager's `--worker-image`.

Shared workers: a kind whose CRD has the annotation `digi.dev/worker-mode:
shared` gets, on a backend with `shared_workers = True`, one process per
(namespace, kind, driver directory) hosting all those digis; the spec of such
a digi names its pool (`WorkerSpec.pool`, from `pool_id`) and carries the
pool's environment (the pool token, no NAME) instead of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from manager.types import ObjectKey

DRIVER_DIR_ANNOTATION = "digi.dev/driver-dir"
IMAGE_ANNOTATION = "digi.dev/image"
WORKER_MODE_ANNOTATION = "digi.dev/worker-mode"
SHARED_MODE = "shared"

# Worker states, as `digi list` and `digi_workers{state}` show them.
STARTING, RUNNING, BACKOFF, STOPPED, DEPLOYED, NO_DRIVER = (
    "starting", "running", "backoff", "stopped", "deployed", "no-driver",
)


@dataclass(frozen=True)
class WorkerSpec:
    key: ObjectKey
    kind: str
    env: dict[str, str] = field(hash=False)
    driver_dir: str | None = None
    image: str | None = None
    uid: str = ""
    pool: str = ""  # the shared worker hosting this digi ("" = a process of its own)
    obj: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def pool_id(driver_dir: str) -> str:
    """The id of the shared worker running `driver_dir` (unique per namespace and kind).

    It starts with `_`, which no Kubernetes object name can, so pool files never clash with a digi's."""
    return "_shared-" + hashlib.sha256(driver_dir.encode()).hexdigest()[:10]


class Backend(Protocol):
    shared_workers: bool  # whether `ensure` understands `WorkerSpec.pool`

    def ensure(self, spec: WorkerSpec) -> None: ...
    def remove(self, key: ObjectKey) -> None: ...
    def states(self) -> dict[ObjectKey, str]: ...
    def shutdown(self) -> None: ...


def annotation(name: str, *objs: dict[str, Any] | None) -> str | None:
    """The first non-empty value of annotation `name` among `objs`."""
    for obj in objs:
        value = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(name)
        if value:
            return str(value)
    return None
