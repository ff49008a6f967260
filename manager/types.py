"""Small value types shared by the manager, the controllers and the CLI.

A digi kind is addressed by its GVR (group/version/plural), which is also the
form the original project used in mount paths (`mock.digi.dev/v1/lamps`).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class GVR(NamedTuple):
    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def parse(cls, text: str) -> GVR:
        """Parse `group/version/plural` (the mount path form)."""
        parts = text.strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{text!r} is not group/version/plural, e.g. mock.digi.dev/v1/lamps")
        return cls(parts[0], parts[1], parts[2])


class ObjectKey(NamedTuple):
    gvr: GVR
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.gvr}/{self.namespace}/{self.name}"

    @classmethod
    def of(cls, gvr: GVR, obj: dict[str, Any]) -> ObjectKey:
        meta = obj.get("metadata", {})
        return cls(gvr, meta.get("namespace", "default"), meta["name"])
