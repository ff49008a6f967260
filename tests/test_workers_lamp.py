"""The lamp end to end: `digi run`, kubectl, the real driver engine, a manager crash mid-burst, metrics.

Runs a manager process against the session's space (local workers) and drives
it through the `digi` CLI in-process and `kubectl` as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from digi.cli.main import cli
from digi.worker.client import WorkerEnv
from digi.worker.loop import events_url
from manager.events import EVENT_GVR
from manager.kube import Client
from manager.server.tokens import TokenIssuer
from manager.types import GVR, ObjectKey
from tests.manager_fixtures import REPO, ManagerProcess, wait_for

pytestmark = pytest.mark.slow

LAMP = GVR("mock.digi.dev", "v1", "lamps")
ROOM = GVR("mock.digi.dev", "v1", "rooms")
LAMP_DIR = REPO / "digis" / "lamp"
ROOM_DIR = REPO / "digis" / "room"


@pytest.fixture(scope="module")
def client(space: Any) -> Client:
    return Client.from_kubeconfig(space.kubeconfig)


@pytest.fixture(scope="module")
def manager(space: Any, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("lamp-manager")).start()
    try:
        yield mgr
    finally:
        if mgr.proc is not None and mgr.proc.poll() is None:
            assert mgr.stop() == 0, mgr.log()[-3000:]


def digi(manager: ManagerProcess, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(
        cli, ["--root", str(manager.root), "--kubeconfig", str(manager.space.kubeconfig), *args],
        catch_exceptions=False,
    )
    if ok:
        assert result.exit_code == 0, f"digi {' '.join(args)} failed ({result.exit_code}):\n{result.output}"
    return result.output


def kubectl(space: Any, *args: str) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", str(space.kubeconfig), *args],
                          check=True, capture_output=True, text=True).stdout


def power(client: Client, namespace: str, name: str) -> dict[str, Any]:
    return dict(client.get(LAMP, namespace, name)["spec"]["control"]["power"])


def has_status(client: Client, namespace: str, name: str, status: str) -> bool:
    return power(client, namespace, name).get("status") == status


def test_digi_run_lamp_then_kubectl_patch_turns_it_on(manager: ManagerProcess, client: Client, namespace: str) -> None:
    out = digi(manager, "run", str(LAMP_DIR), "l1", "-n", namespace)
    assert f"lamp/l1 created in {namespace}" in out
    wait_for(lambda: "running" in digi(manager, "list", "-n", namespace), 60, "the lamp's worker to run")
    kubectl(manager.space, "patch", "lamp", "l1", "-n", namespace, "--type", "merge",
            "-p", '{"spec":{"control":{"power":{"intent":"on"}}}}')
    wait_for(lambda: power(client, namespace, "l1").get("status") == "on", 60, "the driver to set status 'on'")

    model = json.loads(digi(manager, "check", f"{namespace}/l1", "-o", "json"))
    assert model["control"]["power"] == {"intent": "on", "status": "on"}
    listing = digi(manager, "list", "-n", namespace)
    assert listing.splitlines()[0].split() == ["KIND", "NAME", "NAMESPACE", "WORKER", "AGE"]
    assert listing.splitlines()[1].split()[:4] == ["Lamp", "l1", namespace, "running"]
    assert "connected to the manager" in digi(manager, "log", "lamp/l1", "-n", namespace)


def test_unknown_name_suggests_close_matches(manager: ManagerProcess, namespace: str) -> None:
    digi(manager, "run", str(LAMP_DIR), "desk-lamp", "-n", namespace)
    out = digi(manager, "check", "desk-lamb", "-n", namespace, ok=False)
    assert "no digi 'desk-lamb'" in out and "did you mean 'desk-lamp'" in out


def test_digi_edit_and_stop(manager: ManagerProcess, client: Client, namespace: str, tmp_path: Path) -> None:
    digi(manager, "run", str(LAMP_DIR), "e1", "-n", namespace)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/wattage: 12/wattage: 40/' \"$1\"\n")
    editor.chmod(0o755)
    out = CliRunner(env={"EDITOR": str(editor)}).invoke(
        cli, ["--root", str(manager.root), "--kubeconfig", str(manager.space.kubeconfig), "edit", "e1", "-n", namespace])
    assert out.exit_code == 0, out.output
    assert client.get(LAMP, namespace, "e1")["spec"]["meta"]["wattage"] == 40
    wait_for(lambda: "running" in digi(manager, "list", "-n", namespace), 60, "the worker to run")
    assert "stopped" in digi(manager, "stop", "e1", "-n", namespace)
    wait_for(lambda: client.get_or_none(LAMP, namespace, "e1") is None, 30, "the lamp to be deleted")
    state_file = manager.root / "workers" / namespace / "lamps" / "e1.json"
    wait_for(lambda: json.loads(state_file.read_text())["state"] == "stopped", 30, "the worker to stop")


def lamp_state(manager: ManagerProcess, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads((manager.root / "workers" / namespace / "lamps" / f"{name}.json").read_text()))


def test_a_lamp_worker_killed_with_sigkill_restarts_and_converges(
    manager: ManagerProcess, client: Client, namespace: str
) -> None:
    digi(manager, "run", str(LAMP_DIR), "k1", "-n", namespace)
    wait_for(partial(has_status, client, namespace, "k1", "off"), 60, "k1 to start")
    pid = int(lamp_state(manager, namespace, "k1")["pid"])
    worker = psutil.Process(pid)
    assert worker.cwd() == str(LAMP_DIR / "driver") and "digi.worker" in worker.cmdline(), "the real lamp driver"
    os.kill(pid, signal.SIGKILL)
    # Set while no worker runs: the restarted worker's resync must carry it.
    client.patch(LAMP, namespace, "k1", {"spec": {"control": {"power": {"intent": "on"}}}})
    state = wait_for(lambda: (s := lamp_state(manager, namespace, "k1"))["restarts"] == 1
                     and s["state"] == "running" and s, 30, "the restart to be counted")
    assert state["pid"] != pid
    wait_for(partial(has_status, client, namespace, "k1", "on"), 60, "the restarted lamp to turn on")
    # And a new intent set after the restart reaches the new worker live.
    client.patch(LAMP, namespace, "k1", {"spec": {"control": {"brightness": {"intent": 0.4}}}})
    wait_for(lambda: power_and_brightness(client, namespace, "k1") == ("on", 0.4), 60,
             "the restarted lamp to take brightness 0.4")
    events, _ = client.list_all(EVENT_GVR, namespace)
    crashed = [e for e in events if e["reason"] == "WorkerCrashed" and e["involvedObject"]["name"] == "k1"]
    assert crashed and "code -9" in crashed[0]["message"]


def power_and_brightness(client: Client, namespace: str, name: str) -> tuple[Any, Any]:
    control = client.get(LAMP, namespace, name)["spec"]["control"]
    return control["power"].get("status"), control["brightness"].get("status")


def reports(client: Client, namespace: str, name: str, want: tuple[str, float]) -> bool:
    return power_and_brightness(client, namespace, name) == want


class _Burst(threading.Thread):
    """Writes a new intent to every lamp, round after round, until stopped; remembers the latest.

    Round n sets power `on` for odd n and `off` for even n, and brightness n/1000:
    every write is a value no earlier write had, so a status equal to it was
    reconciled from that very intent."""

    def __init__(self, client: Client, namespace: str, names: list[str]) -> None:
        super().__init__(name="intent burst", daemon=True)
        self.client, self.namespace, self.names = client, namespace, names
        self.rounds = 0
        self.latest: dict[str, tuple[str, float]] = {}
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                n = self.rounds + 1
                intent = ("on" if n % 2 else "off", n / 1000)
                for name in self.names:
                    self.client.patch(LAMP, self.namespace, name, {"spec": {"control": {
                        "power": {"intent": intent[0]}, "brightness": {"intent": intent[1]}}}})
                    self.latest[name] = intent
                self.rounds = n
                time.sleep(0.05)
        except BaseException as e:  # surfaced by the test after join
            self.error = e

    def after(self, rounds: int, what: str) -> int:
        """Wait until `rounds` more rounds are written; the round count then."""
        target = self.rounds + rounds
        wait_for(lambda: self.error is not None or self.rounds >= target, 60, what)
        assert self.error is None, f"the burst failed: {self.error!r}"
        return self.rounds


def test_manager_killed_during_a_burst_loses_no_intent(
    manager: ManagerProcess, client: Client, namespace: str
) -> None:
    names = [f"b{i}" for i in range(4)]
    digi(manager, "run", str(LAMP_DIR), *names, "-n", namespace)
    for name in names:
        wait_for(partial(has_status, client, namespace, name, "off"), 60, f"{name} to start")
    pids = [lamp_state(manager, namespace, n)["pid"] for n in names]
    burst = _Burst(Client.from_kubeconfig(manager.space.kubeconfig), namespace, names)
    burst.start()
    try:
        burst.after(3, "the burst to be under way")
        manager.kill()  # SIGKILL, while the burst thread keeps writing intents
        killed_at = burst.rounds
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in pids), 30, "the killed manager's workers to exit, leaving no orphans")
        restarted_at = burst.after(3, "intents written while no manager runs")
        manager.start(wait=False)
        manager.wait_ready()
        burst.after(3, "intents written while the restarted manager catches up")
    finally:
        burst.halt.set()
        burst.join(30)
    assert burst.error is None, f"the burst failed: {burst.error!r}"
    assert restarted_at - killed_at >= 3, "intents changed while the manager was down"
    for name in names:
        want = burst.latest[name]
        wait_for(partial(reports, client, namespace, name, want), 60,
                 f"{name}'s status to equal its latest intent {want!r}")


def test_metrics_expose_controller_runtime_and_digi_series(
    manager: ManagerProcess, client: Client, namespace: str
) -> None:
    digi(manager, "run", str(LAMP_DIR), "m1", "-n", namespace)
    client.patch(LAMP, namespace, "m1", {"spec": {"control": {"power": {"intent": "on"}}}})
    wait_for(lambda: power(client, namespace, "m1").get("status") == "on", 60, "m1 to turn on")
    samples = manager.metrics()
    assert httpx.get(f"{manager.url}/healthz").status_code == 200
    assert httpx.get(f"{manager.url}/readyz").text == "ok"
    for name in (
        "controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds_bucket", "controller_runtime_active_workers",
        "controller_runtime_max_concurrent_reconciles", "workqueue_depth", "workqueue_adds_total",
        "workqueue_queue_duration_seconds_bucket", "workqueue_work_duration_seconds_bucket",
        "workqueue_retries_total", "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds", "rest_client_requests_total",
        "digi_digis", "digi_workers", "digi_dispatch_latency_seconds_bucket",
    ):
        assert name in samples, f"/metrics lacks {name}"
    reconciles = {labels["result"]: value for labels, value in samples["controller_runtime_reconcile_total"]
                  if labels["controller"] == "dispatcher"}
    assert reconciles["success"] > 0
    assert {"controller", "name"} <= set(samples["workqueue_adds_total"][0][0])
    assert {"code", "method", "host"} == set(samples["rest_client_requests_total"][0][0])
    assert ({"kind": "Lamp", "namespace": namespace}, 1.0) in samples["digi_digis"]
    assert any(labels["state"] == "running" and value > 0 for labels, value in samples["digi_workers"])
    count = sum(v for labels, v in samples["digi_dispatch_latency_seconds_count"])
    assert count > 0


def test_digi_watch_prints_each_new_version(manager: ManagerProcess, client: Client, namespace: str) -> None:
    digi(manager, "run", str(LAMP_DIR), "w1", "-n", namespace)
    wait_for(partial(has_status, client, namespace, "w1", "off"), 60, "w1 to start")
    watcher = subprocess.Popen(
        [str(Path(sys.executable).parent / "digi"), "--root", str(manager.root), "--kubeconfig",
         str(manager.space.kubeconfig), "watch", "w1", "-n", namespace, "-o", "json", "--timeout", "20"],
        stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    first = watcher.stdout.readline()
    assert first.startswith("# ") and "generation" in first
    client.patch(LAMP, namespace, "w1", {"spec": {"control": {"power": {"intent": "on"}}}})
    wait_for(partial(has_status, client, namespace, "w1", "on"), 60, "w1 to turn on")
    client.delete(LAMP, namespace, "w1")
    out, _ = watcher.communicate(timeout=60)
    assert '"status": "on"' in out, "the watch shows the driver's write"
    assert out.rstrip().endswith("was deleted")


def test_a_name_in_two_namespaces_must_be_qualified(manager: ManagerProcess, client: Client, namespace: str) -> None:
    other = f"{namespace}-b"
    namespaces = GVR("", "v1", "namespaces")
    client.create(namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        digi(manager, "run", str(LAMP_DIR), "twin", "-n", namespace)
        digi(manager, "run", str(LAMP_DIR), "twin", "-n", other)
        out = digi(manager, "check", "twin", ok=False)
        assert "names 2 digis" in out and f"lamp/{namespace}/twin" in out and f"lamp/{other}/twin" in out
        assert "intent" in digi(manager, "check", f"{other}/twin")
        assert "stopped" in digi(manager, "stop", f"{other}/twin")
    finally:
        client.delete(namespaces, None, other)


def test_a_lamps_token_is_refused_for_the_room_of_the_same_name(
    manager: ManagerProcess, client: Client, namespace: str
) -> None:
    digi(manager, "run", str(ROOM_DIR), "x", "-n", namespace)
    digi(manager, "run", str(LAMP_DIR), "x", "-n", namespace)
    wait_for(partial(has_status, client, namespace, "x", "off"), 60, "the lamp x to start")
    room_log = manager.root / "workers" / namespace / "rooms" / "x.log"
    wait_for(lambda: "connected to the manager" in room_log.read_text(), 60, "the room x's worker to connect")
    issuer = TokenIssuer.from_file(manager.root / "manager" / "worker-token.secret")
    lamp_token = issuer.token(ObjectKey(LAMP, namespace, "x"))
    headers = {"Authorization": f"Bearer {lamp_token}"}
    url = f"{manager.url}/api/v1/digis/{namespace}/x"

    assert httpx.get(url, params={"gvr": str(LAMP)}, headers=headers).json()["kind"] == "Lamp"
    assert httpx.get(url, params={"gvr": str(ROOM)}, headers=headers).status_code == 403
    forged = httpx.patch(url, params={"gvr": str(ROOM)}, headers=headers,
                         json={"patch": {"spec": {"control": {"power": {"status": "hacked"}}}}})
    assert forged.status_code == 403
    assert f"tried to patch digi {namespace}/x of {ROOM}" in manager.log()
    as_room = WorkerEnv(manager.url, lamp_token, ROOM.group, ROOM.version, ROOM.plural, "Room", "x", namespace)
    with pytest.raises(InvalidStatus) as refused, connect(events_url(as_room), additional_headers=as_room.headers,
                                                           proxy=None):
        pass
    assert refused.value.response.status_code == 403

    # The room's own credentials and stream are untouched: its token still reads the room, and the
    # manager never closed the room worker's stream for a newer connection.
    room_headers = {"Authorization": f"Bearer {issuer.token(ObjectKey(ROOM, namespace, 'x'))}"}
    assert httpx.get(url, params={"gvr": str(ROOM)}, headers=room_headers).json()["kind"] == "Room"
    assert "manager closed the stream" not in room_log.read_text(), "nobody took over the room's stream"
