"""`digi demo office`: the smart office from real sensor data, end to end.

It brings the local dSpace up, builds building `hq` → room `office-1` (two lamps, a
motion sensor, an environment sensor) with a `replay` feeding rows of the office
data set, shows the hierarchy and a live progress bar, and ends with a summary in
which each figure the product computed stands next to the one the CSV gives with
the same rule (`digi.demo.summary`). Exit code 1 when they disagree.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click
from kubernetes import config

from digi.cli.context import CliContext, pass_cli
from digi.demo import dataset, observe, rules, scenario, summary
from digi.lake import LakeClient, LakeNotFound, pool_name
from digi.space import Space

DEFAULT_SOURCE = scenario.PROJECT / "data" / "occupancy" / "datatraining.txt"
BAR = 30


class Progress:
    """A progress bar on a terminal; a line per 10 % otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.tty, self.decile = stream, stream.isatty(), -1

    def __call__(self, obs: dict[str, Any]) -> None:
        total, done = obs.get("rows_total") or 0, obs.get("rows_applied") or 0
        if not total:
            return
        share = done / total
        filled = int(BAR * share)
        text = f"  [{'#' * filled}{'.' * (BAR - filled)}] {done}/{total} rows ({100 * share:5.1f} %)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
            self.stream.flush()
        elif int(10 * share) > self.decile:
            self.decile = int(10 * share)
            self.stream.write(text + "\n")


@click.group()
def demo() -> None:
    """Runnable scenarios on a local dSpace."""


@demo.command()
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Rows to replay  [default: the whole file].")
@click.option("--first-row", type=click.IntRange(min=1), default=1, show_default=True,
              help="1-based data row to start from.")
@click.option("--mode", type=click.Choice(["lockstep", "paced"]), default="lockstep", show_default=True,
              help="lockstep: a row is written once the previous one fully propagated (deterministic); "
                   "paced: rows follow their recorded spacing divided by --speed.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="paced: data seconds per wall-clock second.")
@click.option("--source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=DEFAULT_SOURCE, show_default="data/occupancy/datatraining.txt",
              help="A file of the occupancy data set.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="lockstep: seconds one row may take to propagate before the run fails.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Summary format; with json, progress goes to stderr and only the summary to stdout.")
@pass_cli
def office(cli: CliContext, rows: int | None, first_row: int, mode: str, speed: float, source: Path,
           timeout: float, output: str) -> None:
    """Replay real office readings through building hq → room office-1, then report.

    \b
    The room is in adaptive mode: its two lamps are on exactly when the motion
    sensor reports someone, dimmed by the measured daylight (digis/README.md).
    The summary shows, next to what the CSV gives with the same rule: rows,
    occupancy and lamp power changes, agreement with the ground truth, energy
    per lamp and for the room (from `digi query`), the building's occupancy
    series, and mount propagation latency from the manager's metrics.
    \b
      digi demo office --rows 500             # what `make demo ROWS=500` runs
      digi demo office --mode paced --speed 600
      digi demo office --rows 60 -o json | jq .ok
      digi space down                         # stop it all afterwards
    """
    log = sys.stderr if output == "json" else sys.stdout

    def echo(text: str) -> None:
        click.echo(text, file=log)

    try:
        scenario.preflight()
        readings = dataset.read(source, first_row, rows)
    except (scenario.DemoError, dataset.DatasetError) as e:
        raise click.ClickException(str(e)) from None
    digi = scenario.DigiCli(cli.root, echo, log)
    office_ = scenario.Office()
    try:
        report = _run(cli, digi, office_, readings, source, mode, speed, timeout, echo, Progress(log))
    except scenario.DemoError as e:
        raise click.ClickException(str(e)) from None
    if output == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        echo("")
        echo(summary.render(report))
    if report.failures:
        sys.exit(1)


def _run(cli: CliContext, digi: scenario.DigiCli, office: scenario.Office,
         readings: list[dataset.Reading], source: Path, mode: str, speed: float, timeout: float,
         echo: Any, progress: Progress) -> summary.Summary:
    digi.run("space", "up")
    space = Space(cli.root)
    api = config.new_client_from_config(config_file=str(space.kubeconfig))
    run = scenario.OfficeRun(digi, api, office, echo)
    with LakeClient(space.lake_url) as lake:
        def delete_pool(name: str) -> None:
            with contextlib.suppress(LakeNotFound):
                lake.delete_pool(pool_name(name, office.namespace))
        run.reset(delete_pool)
    run.create()
    run.configure(source.resolve(), readings[0].row, len(readings), mode, speed, timeout)
    run.compose()
    echo("")
    digi.run("graph")
    echo(f"\nreplaying rows {readings[0].row}..{readings[-1].row} of {source.name} ({mode})")
    run.start()
    final = run.follow(progress, stall=2 * timeout)
    lagging = run.settle(lambda: observe.pipeline_counts(digi.query, office), timeout=60)
    status = space.status()["components"].get("manager", {})
    metrics_url = status.get("metrics") or (f"{status['url']}/metrics" if status.get("url") else None)
    seen = observe.observe(digi.query, office, final, metrics_url)
    expected = {lamp: rules.expected(readings, float(run.spec("lamp", lamp)["meta"]["wattage"]))
                for lamp in office.lamps}
    title = (f"{office.room} in {office.building}: rows {readings[0].row}..{readings[-1].row} "
             f"of {source.name}, {mode}")
    return summary.compare(title, office.room, readings, seen, expected, mode, lagging)


commands = [demo]
