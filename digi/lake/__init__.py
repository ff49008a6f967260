"""Client for the Zed lake that holds every digi's data pool.

`LakeClient` (HTTP API), `EventStream` (the `/events` feed), and
`digi.lake.zed` for quoting names and writing ZSON. `pool_name` is the one
place that maps a digi to its pool.
"""

from __future__ import annotations

from digi.lake.client import (
    EMPTY_COMMIT,
    Branch,
    InvalidQuery,
    LakeClient,
    LakeConflict,
    LakeError,
    LakeNotFound,
    LakeUnavailable,
    Pool,
    QueryError,
)
from digi.lake.events import EventStream, LakeEvent


def pool_name(name: str, namespace: str = "default") -> str:
    """The pool of digi `namespace/name`: `<name>`, or `<namespace>_<name>` outside `default`."""
    return name if namespace in ("", "default") else f"{namespace}_{name}"


__all__ = [
    "EMPTY_COMMIT",
    "Branch",
    "EventStream",
    "InvalidQuery",
    "LakeClient",
    "LakeConflict",
    "LakeError",
    "LakeEvent",
    "LakeNotFound",
    "LakeUnavailable",
    "Pool",
    "QueryError",
    "pool_name",
]
