"""The `digi` command's lazily loaded command table matches the area modules that define the commands."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from digi.cli.main import COMMANDS, cli


def test_every_area_command_is_in_the_table_and_nothing_else() -> None:
    defined = {c.name: area for area in set(COMMANDS.values())
               for c in importlib.import_module(area).commands}
    assert defined == COMMANDS


def test_help_lists_every_command_with_its_summary() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)


def test_unknown_command_is_refused_by_name() -> None:
    result = CliRunner().invoke(cli, ["mountt"])
    assert result.exit_code == 2 and "No such command 'mountt'" in result.output


def test_running_one_command_imports_only_its_area() -> None:
    code = ("import sys; from digi.cli.main import cli; cli.get_command(None, 'run'); "
            "print(sorted(m for m in sys.modules if m.startswith(('networkx', 'fastapi', 'digi.cli.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "digi.cli.digis_cmd" in out
    assert "networkx" not in out and "digi.cli.compose_cmd" not in out and "fastapi" not in out
