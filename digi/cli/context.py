"""What every `digi` command knows: the dSpace root and how to reach the API server.

`--root` and `--kubeconfig` are accepted before the subcommand and after it
(`digi space up --root X`): `global_options()` makes the two options, which the
top-level group and every command (`digi.cli.main.LazyGroup`) carry. Each
occurrence writes into the one `CliContext` of the invocation, so the last one
given, the most specific, wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the CLI imports manager.kube (and the kubernetes client) only when a command needs it
    from manager.kube import Unreachable


def default_root() -> Path:
    return Path(os.environ.get("DIGI_ROOT") or Path.home() / ".digi")


@dataclass
class CliContext:
    root: Path = field(default_factory=default_root)
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


def _store(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    # An option left out (None) must not undo one given earlier on the command line.
    if value is not None and param.name is not None:
        setattr(ctx.ensure_object(CliContext), param.name, value)


def global_options() -> list[click.Parameter]:
    """Fresh `--root` and `--kubeconfig` options for one command (click binds a parameter to one)."""
    return [
        click.Option(
            ["--root", "root"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_store,
            show_default="$DIGI_ROOT or ~/.digi",
            help="Directory of the local dSpace: kubeconfig, logs, data.",
        ),
        click.Option(
            ["--kubeconfig", "kubeconfig_override"],
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_store,
            help="Talk to this cluster instead of the local dSpace ($ROOT/kubeconfig).",
        ),
    ]


def unreachable(error: Unreachable, cli: CliContext) -> click.ClickException:
    """A connection failure told as what to do: the innermost cause (e.g. `Connection
    refused`) is the part a user can act on, not the client library's wrapping of it."""
    cause = error.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    reason = (getattr(cause, "strerror", None) or str(cause)) if cause is not None else str(error)
    source = cli.kubeconfig_override or cli.root / "kubeconfig"
    return click.ClickException(
        f"cannot reach the API server at {error.host} ({reason}), named by {source}. "
        "For the local dSpace, 'digi space status' shows whether it runs and 'digi space up' "
        "starts it; for a cluster, check its address in that kubeconfig or pass --kubeconfig."
    )
