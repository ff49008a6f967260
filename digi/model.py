"""`digi.model`: read and write the digi's own model outside the reconcile cycle.

For loaders and loops: `get()` reads the current spec from the manager,
`patch(view)` merge-patches the spec, `patch("obs.watt", 3)` sets one
attribute. These writes are not guarded and not skipped: they are new
generations the handlers see, like a user's write. Inside a handler, edit the
model you were given instead; the engine writes it once at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digi import util
from digi.engine.current import current_engine


def get() -> dict[str, Any]:
    """The digi's current spec, read fresh."""
    spec = current_engine().client.get().get("spec")
    return spec if isinstance(spec, dict) else {}


def patch(view_or_path: Mapping[str, Any] | str, value: Any = None) -> dict[str, Any]:
    """Merge-patch the spec with a (partial) model, or set one dotted path to `value` (None deletes).

    Returns the new spec.
    """
    if isinstance(view_or_path, str):
        body: dict[str, Any] = {}
        util.deep_set(body, view_or_path, value)
    else:
        body = dict(view_or_path)
    new = current_engine().client.patch({"spec": body})
    spec = new.get("spec")
    return spec if isinstance(spec, dict) else {}


def get_mount(group: str | None = None, version: str | None = None, resource: str | None = None,
              any: bool = False) -> dict[str, Any]:
    """All replicas by name (`any=True`), the replicas of one child kind (`resource`), or `mount`."""
    mounts = get().get("mount") or {}
    if any:
        return {name: m for ms in mounts.values() for name, m in ms.items()}
    if resource:
        return mounts.get(util.full_gvr(f"{group}/{version}/{resource}" if group and version else resource)) or {}
    return dict(mounts)
