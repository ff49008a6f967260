"""Entry point of the `digi` command.

Each area of the CLI lives in its own module and exposes a list `commands`;
this module only assembles them into one click group, so areas evolve
independently. Global options (`--root`, `--kubeconfig`) are resolved once
into a `digi.cli.context.CliContext` that every command receives.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from digi.cli.context import CliContext, default_root

# Modules contributing commands, in the order `--help` lists them.
_AREAS = (
    "digi.cli.space_cmd",
    "digi.cli.kinds_cmd",
    "digi.cli.digis_cmd",
    "digi.cli.compose_cmd",
    "digi.cli.demo_cmd",
    "digi.cli.build_cmd",
    "digi.cli.lake_cmd",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_root,
    show_default="$DIGI_ROOT or ~/.digi",
    help="Directory of the local dSpace: kubeconfig, logs, data.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Talk to this cluster instead of the local dSpace ($ROOT/kubeconfig).",
)
@click.pass_context
def cli(ctx: click.Context, root: Path, kubeconfig: Path | None) -> None:
    """Digi: lightweight digital twins on Kubernetes.

    \b
    Start a local dSpace and a first digi:
      digi space up
      digi run digis/lamp l1
      kubectl --kubeconfig ~/.digi/kubeconfig patch lamp l1 --type merge \\
        -p '{"spec":{"control":{"power":{"intent":"on"}}}}'
      digi check l1
    """
    ctx.obj = CliContext(root=root, kubeconfig_override=kubeconfig)


for _area in _AREAS:
    for _command in importlib.import_module(_area).commands:
        cli.add_command(_command)


def main() -> None:
    cli()
