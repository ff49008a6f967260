"""Entry point of the `digi` command.

Each area of the CLI lives in its own module and exposes a list `commands`;
this module only assembles them into one click group, so areas evolve
independently. The group imports an area when one of its commands is called
(or listed by `--help`): `digi run` does not pay for the composition, lake
and space modules' imports (networkx, FastAPI...), which was most of its
start-up time. `tests/test_cli.py` checks `COMMANDS` against the areas.
Global options (`--root`, `--kubeconfig`) are accepted before and after the
subcommand and land in one `digi.cli.context.CliContext` that every command
receives. A failure to reach the API server, from any command, is an ordinary
error (`Error: cannot reach the API server at ...`) saying what to do.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from digi.cli.context import CliContext, global_options, unreachable
from digi.errors import DigiError

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
        return with_global_options(next(c for c in commands if c.name == cmd_name))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigiError as e:
            # manager.kube is loaded already when its ApiError is raised, so this import is free
            # and commands that never talk to the API server do not pay for it.
            from manager.kube import Unreachable

            if isinstance(e, Unreachable):
                raise unreachable(e, ctx.ensure_object(CliContext)) from None
            raise


def with_global_options(cmd: click.Command) -> click.Command:
    """`cmd` (and a group's subcommands) accepting --root/--kubeconfig after its name too.

    Called each time click looks a command up, so it adds them only once.
    """
    if not any(p.name == "root" for p in cmd.params):
        cmd.params.extend(global_options())
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            with_global_options(sub)
    return cmd


@click.group(
    cls=LazyGroup,
    params=global_options(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Digi: lightweight digital twins on Kubernetes.

    \b
    Start a local dSpace and a first digi:
      digi space up
      digi run digis/lamp l1
      kubectl --kubeconfig ~/.digi/kubeconfig patch lamp l1 --type merge \\
        -p '{"spec":{"control":{"power":{"intent":"on"}}}}'
      digi check l1
    """
    ctx.ensure_object(CliContext)  # the defaults, unless --root/--kubeconfig made it already


def main() -> None:
    cli()
