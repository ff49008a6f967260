"""Where things live under a dSpace root ($DIGI_ROOT, default ~/.digi)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state(self) -> Path:
        """Ports and pids of the components (JSON)."""
        return self.root / "space.json"

    @property
    def lock(self) -> Path:
        return self.root / "space.lock"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def lake_data(self) -> Path:
        return self.root / "lake"

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        """What `up --fresh` wipes: the stored objects and the lake."""
        return (self.etcd_data, self.lake_data)

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"
