"""The local dSpace supervisor (`digi space`, `digi.space.Space`) with real processes.

Each test runs its own Space in its own temp root (not the session `space`
fixture, which other tests share) and checks that nothing of it is left
running afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from digi.space import Space, SpaceError
from digi.space.tools import tool_path

pytestmark = pytest.mark.slow

DIGI = Path(sys.executable).parent / "digi"
CONTROL_PLANE = {"etcd", "kube-apiserver", "lake"}


def processes_of(root: Path, settle: float = 10.0) -> list[psutil.Process]:
    """Live processes whose command line mentions `root` (what `pgrep -f ROOT` finds).

    A process that was just killed can stay visible for a moment on a loaded
    machine, so this waits up to `settle` seconds for the list to empty.
    """
    deadline = time.monotonic() + settle
    while True:
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if any(str(root) in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "space"
    try:
        yield root
    finally:
        Space(root).down()
        assert processes_of(root) == [], "the test left processes of its space running"


def digi(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGI_ROOT", "KUBECONFIG")}
    return subprocess.run(
        [str(DIGI), "--root", str(root), "space", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def status_json(root: Path) -> dict[str, Any]:
    result = digi(root, "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_cli_up_status_up_again_down(root: Path) -> None:
    up = digi(root, "up", "--no-manager")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"export KUBECONFIG={root / 'kubeconfig'}" in up.stdout

    report = status_json(root)
    assert set(report) == {"root", "kubeconfig", "components"}
    assert report["root"] == str(root)
    assert report["kubeconfig"] == str(root / "kubeconfig")
    assert set(report["components"]) == CONTROL_PLANE
    for name, comp in report["components"].items():
        assert set(comp) == {"pid", "url", "healthy", "log"}, name
        assert comp["healthy"] is True, name
        assert psutil.pid_exists(comp["pid"]), name
        assert Path(comp["log"]).is_file(), name
    lake = report["components"]["lake"]["url"]
    assert httpx.get(f"{lake}/version").status_code == 200

    ready = subprocess.run(
        ["kubectl", "--kubeconfig", report["kubeconfig"], "get", "--raw", "/readyz"],
        capture_output=True, text=True, timeout=60,
    )
    assert ready.stdout == "ok", ready.stderr

    table = digi(root, "status")
    assert table.returncode == 0
    assert all(name in table.stdout for name in CONTROL_PLANE)

    again = digi(root, "up", "--no-manager")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert status_json(root)["components"] == report["components"]

    down = digi(root, "down")
    assert down.returncode == 0, down.stderr
    assert processes_of(root) == []
    assert status_json(root)["components"] == {}


def _configmaps(sp: Space) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(sp.kubeconfig)))


def test_data_survives_down_up_and_fresh_wipes_it(root: Path) -> None:
    sp = Space(root)
    sp.up(manager=False)
    _configmaps(sp).create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="keep"), data={"k": "v"})
    )
    url = sp.apiserver_url
    sp.down()
    assert processes_of(root) == []

    sp.up(manager=False)
    assert sp.apiserver_url == url, "ports must be kept across down/up"
    kept = _configmaps(sp).read_namespaced_config_map("keep", "default")
    assert kept.data == {"k": "v"}

    sp.up(fresh=True, manager=False)
    with pytest.raises(ApiException) as gone:
        _configmaps(sp).read_namespaced_config_map("keep", "default")
    assert gone.value.status == 404


def test_missing_binary_names_the_tool_and_starts_nothing(root: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("etcd", "zed"):
        (bin_dir / tool).symlink_to(tool_path(tool))

    with pytest.raises(SpaceError) as err:
        Space(root, bin_dirs=[bin_dir]).up(manager=False)

    assert err.value.component == "kube-apiserver"
    assert "make tools" in str(err.value)
    assert processes_of(root) == []


def test_taken_port_names_the_component_and_leaves_no_orphan(root: Path) -> None:
    sp = Space(root)
    port = sp.init()["kube-apiserver"]["secure"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(SpaceError) as err:
            sp.up(manager=False)

    message = str(err.value)
    assert err.value.component == "kube-apiserver"
    assert f"port {port}" in message
    assert f"pid {os.getpid()}" in message
    assert err.value.stopped == ["etcd"]
    assert processes_of(root) == []


def test_component_dying_at_start_shows_its_log_and_stops_the_others(root: Path) -> None:
    sp = Space(root)
    sp.init()
    # A file where the lake's directory should be makes zed exit at once.
    (root / "lake").write_text("not a lake")

    with pytest.raises(SpaceError) as err:
        sp.up(manager=False)

    message = str(err.value)
    assert err.value.component == "lake"
    assert "exited during start" in message
    assert str(root / "logs" / "lake.log") in message
    assert "not a directory" in message, "the log's last lines belong in the error"
    assert err.value.stopped == ["kube-apiserver", "etcd"]
    assert processes_of(root) == []


def test_interrupted_up_stops_what_it_started(root: Path) -> None:
    def interrupt_after_etcd(line: str) -> None:
        if line.startswith("etcd") and "ready" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Space(root, out=interrupt_after_etcd).up(manager=False)
    assert processes_of(root) == []


def test_manager_joins_a_running_space_as_one_more_component(root: Path) -> None:
    sp = Space(root)
    sp.up(manager=False)
    before = sp.status()["components"]
    assert set(before) == CONTROL_PLANE

    sp.up()
    after = sp.status()["components"]
    assert {name: after[name]["pid"] for name in CONTROL_PLANE} == {
        name: before[name]["pid"] for name in CONTROL_PLANE
    }, "adding the manager must not restart the control plane"
    manager = after["manager"]
    assert manager["healthy"] is True, Path(manager["log"]).read_text()[-2000:]
    metrics = httpx.get(manager["metrics"])
    assert metrics.status_code == 200
    assert "controller_runtime" in metrics.text or "workqueue" in metrics.text

    assert "manager" in sp.down()
    assert processes_of(root) == []
