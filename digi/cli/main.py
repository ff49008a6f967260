"""Entry point of the `digi` command.

Each area of the CLI lives in its own module and exposes a list `commands`;
this module only assembles them into one click group, so areas evolve
independently. The group imports an area when one of its commands is called
(or listed by `--help`): `digi run` does not pay for the composition, lake
and space modules' imports (networkx, FastAPI...), which was most of its
start-up time. `tests/test_cli.py` checks `COMMANDS` against the areas.
Global options (`--root`, `--kubeconfig`) are resolved once into a
`digi.cli.context.CliContext` that every command receives.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from digi.cli.context import CliContext, default_root

# Every command, by the module (area) that defines it.
COMMANDS = {
    "space": "digi.cli.space_cmd",
    "init": "digi.cli.kinds_cmd",
    "gen": "digi.cli.kinds_cmd",
    **dict.fromkeys(("run", "stop", "list", "check", "watch", "edit", "log"), "digi.cli.digis_cmd"),
    **dict.fromkeys(("mount", "unmount", "yield", "activate", "graph", "pipe", "unpipe"), "digi.cli.compose_cmd"),
    "demo": "digi.cli.demo_cmd",
    "build": "digi.cli.build_cmd",
    "query": "digi.cli.lake_cmd",
    "lake": "digi.cli.lake_cmd",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their area module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        area = COMMANDS.get(cmd_name)
        if area is None:
            return None
        commands: list[click.Command] = importlib.import_module(area).commands
        return next(c for c in commands if c.name == cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def main() -> None:
    cli()
