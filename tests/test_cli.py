"""The `digi` command: its lazily loaded command table, the options every command takes,
and `digi watch` and connection failures against a real API server."""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from digi.cli.main import COMMANDS, cli
from digi.space import Space
from manager.cache import CRD_GVR, DIGI_KIND_LABEL, crd_gvr
from manager.kube import Client
from manager.types import GVR
from tests.manager_fixtures import wait_for


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


# -- against real processes ------------------------------------------------------------

BEACON_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "beacons.cli.test.digi.dev", "labels": {DIGI_KIND_LABEL: "true"}},
    "spec": {
        "group": "cli.test.digi.dev",
        "scope": "Namespaced",
        "names": {"kind": "Beacon", "plural": "beacons", "singular": "beacon", "listKind": "BeaconList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
        }],
    },
}
DIGI = str(Path(sys.executable).parent / "digi")


def _beacons(client: Client) -> GVR:
    name = BEACON_CRD["metadata"]["name"]
    if client.get_or_none(CRD_GVR, None, name) is None:
        client.create(CRD_GVR, None, copy.deepcopy(BEACON_CRD))
    return wait_for(lambda: crd_gvr(client.get(CRD_GVR, None, name)), 30, f"CRD {name}")


class _Lines:
    """A process's stdout lines, read in the background, to wait on."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")), daemon=True)
        self.thread.start()

    def wait(self, text: str, what: str, timeout: float = 30) -> None:
        wait_for(lambda: any(text in line for line in self.lines), timeout, what)


@pytest.mark.slow
def test_watch_goes_on_after_its_version_expires_and_ends_at_deletion(space: Space, namespace: str) -> None:
    client = Client.from_kubeconfig(space.kubeconfig)
    gvr = _beacons(client)
    client.create(gvr, namespace, {"apiVersion": "cli.test.digi.dev/v1", "kind": "Beacon",
                                   "metadata": {"name": "b1"}, "spec": {"v": 1}})
    proc = subprocess.Popen([DIGI, "watch", "b1", "-n", namespace, "-o", "json", "--timeout", "90",
                             "--kubeconfig", str(space.kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _Lines(proc)
        out.wait('"v": 1', "the first version")
        # A spec change of the CRD replaces the kind's storage: the open watch ends, and the new
        # watch cache starts after b1's version, so watching again from it gets 410 Gone.
        crd = client.get(CRD_GVR, None, BEACON_CRD["metadata"]["name"])
        versions = crd["spec"]["versions"]
        versions[0]["additionalPrinterColumns"] = [
            {"name": f"V{time.monotonic_ns()}", "type": "integer", "jsonPath": ".spec.v"}]
        client.patch(CRD_GVR, None, crd["metadata"]["name"], {"spec": {"versions": versions}})
        time.sleep(2)
        client.patch(gvr, namespace, "b1", {"spec": {"v": 2}})
        out.wait('"v": 2', "the version written after the watch expired")
        client.delete(gvr, namespace, "b1")
        assert proc.wait(30) == 0
        out.thread.join(5)
        assert out.lines[-1].strip() == f"# beacon/{namespace}/b1 was deleted"
    finally:
        proc.kill()
        proc.wait()


def test_an_unreachable_api_server_is_an_error_saying_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    for args in (["watch", "l1"], ["list"]):
        result = CliRunner().invoke(cli, [*args, "--kubeconfig", str(kubeconfig)])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert f"Error: cannot reach the API server at 127.0.0.1:{port} (Connection refused)" in result.output
        assert str(kubeconfig) in result.output and "'digi space up'" in result.output


def test_root_and_kubeconfig_work_after_the_subcommand(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(tmp_path / "ignored"), "space", "status",
                                      "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"no dSpace running in {tmp_path} (start one with 'digi space up')"
    result = CliRunner().invoke(cli, ["space", "up", "--help"])
    assert "--root DIRECTORY" in result.output and "--kubeconfig FILE" in result.output


@pytest.mark.slow
def test_space_up_with_root_after_the_subcommand_and_status_shows_the_metrics_url(tmp_path: Path) -> None:
    root = tmp_path / "space"
    env = {k: v for k, v in os.environ.items() if k not in ("DIGI_ROOT", "KUBECONFIG")}
    digi = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=300)
    up = digi([DIGI, "space", "up", "--root", str(root)])
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = digi([DIGI, "space", "status", "--root", str(root)])
        assert status.returncode == 0, status.stderr
        header, *rows = status.stdout.splitlines()
        assert header.split() == ["COMPONENT", "PID", "URL", "HEALTHY", "METRICS"]
        (manager,) = [row.split() for row in rows if row.startswith("manager")]
        metrics = manager[4]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", metrics)
        assert "digi_digis" in httpx.get(metrics, timeout=10).text
        # --kubeconfig after the subcommand, with a --root that has no space
        listed = digi([DIGI, "list", "--root", str(tmp_path / "none"), "--kubeconfig", str(root / "kubeconfig")])
        assert listed.returncode == 0, listed.stderr
    finally:
        digi([DIGI, "space", "down", "--root", str(root)])
