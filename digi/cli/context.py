"""What every `digi` command knows: the dSpace root and how to reach the API server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click


def default_root() -> Path:
    return Path(os.environ.get("DIGI_ROOT") or Path.home() / ".digi")


@dataclass
class CliContext:
    root: Path
    kubeconfig_override: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        """`--kubeconfig`, else the local dSpace's kubeconfig."""
        if self.kubeconfig_override is not None:
            return self.kubeconfig_override
        path = self.root / "kubeconfig"
        if not path.exists():
            raise click.ClickException(
                f"no dSpace at {self.root}: {path} does not exist. "
                "Run 'digi space up' first, or pass --kubeconfig/--root."
            )
        return path


pass_cli = click.make_pass_decorator(CliContext)
