"""`digi init` and `digi gen`: scaffold a kind, and turn its model.yaml into a CRD.

Both commands are local file operations (no dSpace needed); errors from
`digi.kinds` already name the file, the attribute path and the fix, so they are
printed as they are and the command exits non-zero without writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from digi.kinds import KindError, load_kind, scaffold
from digi.kinds.model import dump_yaml, write_crd
from digi.kinds.scaffold import DEFAULT_GROUP


@click.command("init")
@click.argument("kind")
@click.option("--group", "-g", default=DEFAULT_GROUP, show_default=True, help="API group of the new kind.")
@click.option("--version", "version_", default="v1", show_default=True, help="API version of the new kind.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Create the kind directory under this directory.")
def init_cmd(kind: str, group: str, version_: str, parent: Path) -> None:
    """Scaffold a new kind: KIND/model.yaml, KIND/deploy/cr.yaml, KIND/driver/handler.py.

    \b
    Examples:
      digi init plug                      # kind Plug in group digi.dev
      digi init lamp --group mock.digi.dev
      digi gen lamp                       # then write lamp/crd.yaml
    """
    try:
        files = scaffold(parent / kind, kind, group=group, version=version_)
    except KindError as e:
        raise click.ClickException(str(e)) from e
    for path in files:
        click.echo(f"created {path}")
    click.echo(f"next: edit {parent / kind / 'model.yaml'}, then run `digi gen {parent / kind}`")


@click.command("gen")
@click.argument("kind_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path), metavar="KIND_DIR...")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default=None,
              help="Print the CRD(s) instead of writing KIND_DIR/crd.yaml.")
def gen_cmd(kind_dirs: tuple[Path, ...], output: str | None) -> None:
    """Generate KIND_DIR/crd.yaml from KIND_DIR/model.yaml.

    Every model is checked before anything is written, so one bad model.yaml
    leaves all outputs untouched.

    \b
    Examples:
      digi gen digis/lamp
      digi gen digis/*                    # every kind, all or nothing
      digi gen digis/lamp -o yaml | kubectl apply -f -
    """
    try:
        kinds = [load_kind(d) for d in kind_dirs]
    except KindError as e:
        raise click.ClickException(str(e)) from e
    if output == "json":
        crds = [k.crd() for k in kinds]
        click.echo(json.dumps(crds[0] if len(crds) == 1 else {"apiVersion": "v1", "kind": "List", "items": crds},
                              indent=2))
        return
    if output == "yaml":
        click.echo("---\n".join(dump_yaml(k.crd()) for k in kinds), nl=False)
        return
    for kind in kinds:
        out = write_crd(kind)
        click.echo(f"wrote {out} ({kind.crd_name})")


commands: list[click.Command] = [init_cmd, gen_cmd]
