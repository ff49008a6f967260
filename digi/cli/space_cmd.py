"""`digi space up|down|status`: the command line of the local dSpace (`digi.space.Space`)."""

from __future__ import annotations

import json

import click
import yaml

from digi.cli.context import CliContext, pass_cli
from digi.space import Space, SpaceError


def _space(cli: CliContext) -> Space:
    return Space(cli.root, out=click.echo)


@click.group()
def space() -> None:
    """Run a local dSpace: etcd, kube-apiserver, the Zed lake and the manager on 127.0.0.1.

    \b
    Everything lives in --root (default $DIGI_ROOT or ~/.digi): kubeconfig,
    pki/, logs/<component>.log, etcd/ and lake/ data, space.json (ports, pids).
    \b
      digi space up                 # start it (again: harmless)
      export KUBECONFIG=~/.digi/kubeconfig
      kubectl get --raw /readyz
      digi space status -o json
      digi space down               # stop it; data stays for the next up
    """


@space.command()
@click.option("--fresh", is_flag=True, help="Stop the space and wipe its data (etcd, lake) first.")
@click.option(
    "--manager/--no-manager",
    default=True,
    show_default=True,
    help="Also start the digi controller-manager.",
)
@pass_cli
def up(cli: CliContext, fresh: bool, manager: bool) -> None:
    """Start the dSpace's components and wait until each is ready.

    \b
    Ports are chosen at the first 'up' and kept; running components are left
    alone, so 'up' twice is harmless. Data survives 'down'/'up'.
    \b
      digi space up
      digi space up --no-manager          # control plane and lake only
      DIGI_ROOT=$(mktemp -d) digi space up --fresh
    """
    sp = _space(cli)
    try:
        sp.up(fresh=fresh, manager=manager)
    except SpaceError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"\ndSpace is up in {sp.root}. Point kubectl at it:\n"
        f"  export KUBECONFIG={sp.kubeconfig}\n"
        "  kubectl get --raw /readyz\n"
        f"Lake: {sp.lake_url}   Stop: digi space down"
    )


@space.command()
@pass_cli
def down(cli: CliContext) -> None:
    """Stop every component (SIGTERM, then SIGKILL); data is kept.

    \b
      digi space down
      digi space up --fresh    # afterwards, to start over empty
    """
    stopped = _space(cli).down()
    if not stopped:
        click.echo(f"nothing was running in {cli.root}")


@space.command()
@click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
    show_default=True, help="Output format.",
)
@pass_cli
def status(cli: CliContext, output: str) -> None:
    """Show each component: pid, URL, whether its readiness probe passes, the manager's /metrics.

    \b
      digi space status
      curl -s $(digi space status -o json | jq -r .components.manager.metrics) | grep digi_
      digi space status -o json | jq '.components["kube-apiserver"].healthy'
    """
    report = _space(cli).status()
    if output == "json":
        click.echo(json.dumps(report, indent=2))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(report, sort_keys=False), nl=False)
        return
    # METRICS: the manager's Prometheus endpoint, the one URL people look for besides health.
    rows = [("COMPONENT", "PID", "URL", "HEALTHY", "METRICS")]
    rows += [
        (name, str(c["pid"] or "-"), c["url"], "yes" if c["healthy"] else "no", c.get("metrics", "-"))
        for name, c in report["components"].items()
    ]
    if len(rows) == 1:
        click.echo(f"no dSpace running in {report['root']} (start one with 'digi space up')")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


commands: list[click.Command] = [space]
