"""`digi run` on the real API server of the `space` fixture (no manager needed: it only creates objects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digi.cli.main import cli
from digi.space import Space

LAMP = Path(__file__).resolve().parents[1] / "digis" / "lamp"


def digi(space: Space, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--kubeconfig", str(space.kubeconfig), *args])


@pytest.mark.slow
def test_running_an_existing_digi_is_a_click_error_after_the_others_are_created(
        space: Space, namespace: str) -> None:
    first = digi(space, "run", str(LAMP), "l1", "-n", namespace)
    assert first.exit_code == 0, first.output
    assert first.stdout == f"lamp/l1 created in {namespace}\n"

    again = digi(space, "run", str(LAMP), "l1", "l2", "-n", namespace)
    assert again.exit_code == 1
    assert again.stdout == f"lamp/l2 created in {namespace}\n"
    assert again.stderr == (f"Error: lamp/l1 already exists in {namespace}; "
                            f"'digi stop -n {namespace} l1' first to restart it\n")

    both = digi(space, "run", str(LAMP), "l1", "l2", "-n", namespace)
    assert both.exit_code == 1 and both.stdout == ""
    assert both.stderr.startswith(f"Error: lamp/l1, lamp/l2 already exist in {namespace}; "
                                  f"'digi stop -n {namespace} l1 l2' first")
