"""`digi run` on the real API server of the `space` fixture (no manager needed: it only creates objects)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digi.cli.main import cli
from digi.space import Space
from manager.kube import Client
from manager.types import GVR

LAMP = Path(__file__).resolve().parents[1] / "digis" / "lamp"
ROOM = LAMP.parent / "room"


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


@pytest.mark.slow
def test_run_brings_an_installed_crd_up_to_the_kind_directory(
        space: Space, namespace: str, tmp_path: Path) -> None:
    """A CRD from an older copy of the kind would prune the new fields from every new digi."""
    def kind(name: str, drop_power: bool) -> Path:
        copy = tmp_path / name
        shutil.copytree(ROOM, copy, ignore=shutil.ignore_patterns("crd.yaml", "driver"))
        model = copy / "model.yaml"
        text = model.read_text().replace("group: mock.digi.dev", "group: runcrd.test.digi.dev")
        if drop_power:
            text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("power:"))
        model.write_text(text + "\n")
        cr = copy / "deploy" / "cr.yaml"
        cr.write_text(cr.read_text().replace("mock.digi.dev/v1", "runcrd.test.digi.dev/v1"))
        return copy

    old, new = kind("old-room", drop_power=True), kind("room", drop_power=False)
    first = digi(space, "run", str(old), "r-old", "-n", namespace)
    assert first.exit_code == 0, first.output
    client = Client.from_kubeconfig(space.kubeconfig)
    rooms = GVR("runcrd.test.digi.dev", "v1", "rooms")
    assert "power" not in client.get(rooms, namespace, "r-old")["spec"]["control"]  # pruned by the old schema

    second = digi(space, "run", str(new), "r-new", "-n", namespace)
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith(f"updated CRD rooms.runcrd.test.digi.dev: its schema differed from {new}\n")
    assert client.get(rooms, namespace, "r-new")["spec"]["control"]["power"] == {"intent": "off"}

    again = digi(space, "run", str(new), "r-again", "-n", namespace)
    assert again.stdout == f"room/r-again created in {namespace}\n", "an equal schema is left alone"
